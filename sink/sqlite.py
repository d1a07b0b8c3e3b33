"""SQLite sink: the embedded default. WAL mode, one writer (the dataflow), any number of readers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import orjson
import structlog

from pypi_pulse.errors import EmptySink, UserError
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.model import PipelineStats, WindowRow
from pypi_pulse.sink.rollup import retention_anchors
from pypi_pulse.sink.schema import MIGRATIONS, migration_script

log = structlog.get_logger(__name__)


# SQLite's primary result codes that mean "this file cannot be the sink" rather than a passing condition (busy,
# locked): not a database, corrupt, cannot open, no permission, read-only, I/O error, not authorised.
_UNUSABLE_FILE = {26, 11, 14, 3, 8, 10, 23}


def _path_of(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


class SQLiteSink(Sink):
    WAL_CHECKPOINT_PAGES = 10_000  # see __init__

    def __init__(self, url: str, *, readonly: bool = False):
        self.url = url
        self.path = _path_of(url)
        if self.path.is_dir():
            raise UserError(f"sink {self.path} is a directory: pass --sink sqlite:///PATH.db of a file")
        try:
            self._connect(readonly)
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _UNUSABLE_FILE:
                raise
            raise UserError(
                f"sink {self.path}: {exc} (SQLite): point --sink at a pypi-pulse SQLite file, or at a new "
                "path to create one"
            ) from None

    def _connect(self, readonly: bool) -> None:
        if readonly:
            if not self.path.exists():
                raise UserError(f"no sink at {self.path}: run `pypi-pulse up` or `pypi-pulse run` first, or fix --sink")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
            try:  # the connection opens lazily: read the schema now, so that a file which is no database fails here
                tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'schema_version'").fetchone()[
                    0
                ]
            except BaseException:
                self.db.close()
                raise
            if not tables:
                self.db.close()
                raise EmptySink(
                    f"no pypi-pulse data in {self.path} yet: run `pypi-pulse up` or `pypi-pulse run` "
                    "first, or fix --sink"
                )
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create {self.path.parent}: {exc}; choose another --sink path") from None
            self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._use_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages for the writer
            # ~40 MiB of WAL between checkpoints rather than SQLite's 4 MiB: fewer checkpoint pauses for the writer
            self.db.execute(f"PRAGMA wal_autocheckpoint={self.WAL_CHECKPOINT_PAGES}")
            self._migrate()
        self.db.execute("PRAGMA busy_timeout=30000")

    def _use_wal(self, patience_s: float = 30.0) -> None:
        """Switch to WAL unless the file already is. Two dataflow workers open the sink at the same moment, and
        SQLite answers a journal-mode change that meets the other's lock with "database is locked" at once,
        without waiting: retried until the other connection is done."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(MIGRATIONS, start=1):
            self.db.execute("BEGIN IMMEDIATE")
            try:  # the version is read under the write lock: another connection may have migrated meanwhile
                if version > (self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0):
                    started, size = time.monotonic(), self.path.stat().st_size
                    if size > 100 * 2**20:
                        log.warning(
                            "sink.migrating",
                            backend="sqlite",
                            path=str(self.path),
                            version=version,
                            size_mib=size // 2**20,
                            note="a one-time upgrade of the schema; a large sink takes minutes",
                        )
                    for stmt in filter(str.strip, migration_script(script, "sqlite").split(";")):
                        self.db.execute(stmt)
                    self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                    if time.monotonic() - started > 1.0:  # e.g. migration 7 rebuilding a large `daily`
                        log.warning(
                            "sink.migrated",
                            backend="sqlite",
                            path=str(self.path),
                            version=version,
                            seconds=round(time.monotonic() - started, 1),
                        )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # ---- writes -------------------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taken at once (IMMEDIATE) so readers never see half of it."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite rolls some failures back by itself (e.g. a full disk)
                cur.execute("ROLLBACK")
            raise

    def set_lock_wait(self, seconds: float) -> None:
        self.db.execute(f"PRAGMA busy_timeout={max(int(seconds * 1000), 1)}")

    def write(self, windows: list[WindowRow], stats: Optional[PipelineStats]) -> None:
        now = time.time()
        with self._transaction() as cur:
            if windows:
                cur.executemany(
                    "INSERT INTO windows (start, downloads, unique_packages, countries, top, written_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (start) DO UPDATE SET downloads=excluded.downloads, "
                    "unique_packages=excluded.unique_packages, countries=excluded.countries, top=excluded.top, "
                    "written_at=excluded.written_at",
                    [
                        (w.start, w.downloads, w.unique_packages, orjson.dumps(w.countries), orjson.dumps(w.top), now)
                        for w in windows
                    ],
                )
            if stats is not None:
                cur.execute(
                    "INSERT INTO pipeline_stats (id, counters, offsets, watermark, updated_at) VALUES (1, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET counters=excluded.counters, offsets=excluded.offsets, "
                    "watermark=excluded.watermark, updated_at=excluded.updated_at",
                    (
                        orjson.dumps(stats.counters),
                        orjson.dumps({str(k): v for k, v in stats.offsets.items()}),
                        stats.watermark,
                        stats.updated_at or now,
                    ),
                )

    def prune_windows(self, window_retention_s: float) -> int:
        latest, _ = retention_anchors()
        newest = self.db.execute("SELECT MAX(start) FROM windows WHERE start <= ?", (latest,)).fetchone()[0]
        if newest is None:
            return 0
        return self.db.execute("DELETE FROM windows WHERE start < ?", (newest - window_retention_s,)).rowcount

    def _execute_in_transaction(self, statements: list[tuple[str, tuple]]) -> None:
        with self._transaction() as cur:
            for sql, params in statements:
                cur.execute(sql, params)

    def _execute_many_in_transaction(self, statements: list[tuple[str, list[tuple]]]) -> None:
        with self._transaction() as cur:
            for sql, params in statements:
                cur.executemany(sql, params)

    # ---- reads --------------------------------------------------------------------------------------------
    @staticmethod
    def _row(r) -> WindowRow:
        return WindowRow(r[0], r[1], r[2], orjson.loads(r[3]), [tuple(t) for t in orjson.loads(r[4])])

    def windows(self, start: int, end: int) -> list[WindowRow]:
        rows = self.db.execute(
            "SELECT start, downloads, unique_packages, countries, top FROM windows WHERE start >= ? AND start < ? ORDER BY start",
            (start, end),
        ).fetchall()
        return [self._row(r) for r in rows]

    def latest_windows(self, n: int) -> list[WindowRow]:
        rows = self.db.execute(
            "SELECT start, downloads, unique_packages, countries, top FROM windows ORDER BY start DESC LIMIT ?", (n,)
        ).fetchall()
        return [self._row(r) for r in reversed(rows)]

    def stats(self) -> Optional[PipelineStats]:
        r = self.db.execute(
            "SELECT counters, offsets, watermark, updated_at FROM pipeline_stats WHERE id = 1"
        ).fetchone()
        if r is None:
            return None
        return PipelineStats(orjson.loads(r[0]), {int(k): v for k, v in orjson.loads(r[1]).items()}, r[2], r[3])

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        self._close_history()
        self.db.close()
