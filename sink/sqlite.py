"""SQLite sink: the embedded default. WAL mode, one writer (the dataflow), any number of readers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Optional

import orjson
import structlog

from pypi_pulse.errors import EmptySink, UserError
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow
from pypi_pulse.sink.rollup import (
    backfill_statements,
    backfilled_among,
    partly_applied,
    prune_backfilled_statement,
    prune_buckets_statement,
    retention_anchors,
)
from pypi_pulse.sink.schema import MIGRATIONS, NULL_AS_DB_CATEGORY, from_db_category, migration_script

_FIRST, _SECOND, _THIRD, _FOURTH = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)
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
            self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB: rollup upserts touch many pages of `daily`
            # A block applied in slices commits every 20,000 rows, and each checkpoint copies the pages the slices
            # keep rewriting (inner B-tree pages, index leaves) back into the file; the default of 1,000 pages
            # checkpoints several times a slice. ~40 MiB of WAL between checkpoints made slices as fast as one big
            # transaction (benchmarks/block_write.py).
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

    def write(self, windows: list[WindowRow], buckets: list[RollupBucket], stats: Optional[PipelineStats]) -> None:
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
            fresh, seen, taken = [], set(), set()
            for b in buckets:
                if b.bucket in seen:
                    continue  # the same bucket twice in one write counts once, as in PostgreSQL
                seen.add(b.bucket)
                applied = self._applied_minutes(cur, b) + len(taken.intersection(b.minutes()))
                if applied == 0:
                    if cur.execute("SELECT 1 FROM rollup_slices WHERE bucket = ? LIMIT 1", (b.bucket,)).fetchone():
                        raise RuntimeError(
                            f"rollup bucket {b.bucket} is being applied in slices: "
                            "finish it with apply_in_slices, or the applied slices would count twice"
                        )
                    fresh.append(b)
                    taken.update(b.minutes())
                elif applied != len(b.minutes()):
                    raise partly_applied(b, applied)
            if fresh:
                self._add_rollups(cur, fresh)
                cur.executemany(
                    "INSERT INTO rollup_buckets (bucket, applied_at) VALUES (?, ?)",
                    [(m, now) for b in fresh for m in b.minutes()],
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

    @staticmethod
    def _add_rollups(cur: sqlite3.Cursor, buckets: list[RollupBucket]) -> None:
        """Add sealed buckets to `daily` and `daily_totals`: the same rows as `rollup.daily_rows` (NULL category
        stored as '', days a backfill owns skipped, see sink/rollup.py)."""
        if len(buckets) == 1 and hasattr(buckets[0].counts, "rows"):
            c = buckets[0].counts  # a dataflow block: its rows in key order, its totals grouped in numpy
            SQLiteSink._upsert_rows(cur, c.rows(), c.totals(), c.days)
        else:
            SQLiteSink._upsert_rows(cur, SQLiteSink._rollup_rows(buckets))

    @staticmethod
    def _rollup_rows(buckets: list[RollupBucket]) -> list[tuple]:
        """(day, project, dimension, category, n) rows of the buckets, sorted by primary key, so that SQLite walks
        its B-trees in order; built by C-level `map`/`zip` (a dataflow block, `BlockRows`, builds its own rows in
        key order and does not come here). Rows of several buckets with the same key are added up by the upsert. Staging
        every bucket's rows in a temporary table and letting SQLite group them measured 2 to 3 times slower;
        so did summing the buckets in Python first."""
        rows: list = []
        for b in buckets:
            keys = b.counts.keys()
            rows += zip(
                map(_FIRST, keys),
                map(_SECOND, keys),
                map(_THIRD, keys),
                map(NULL_AS_DB_CATEGORY.get, map(_FOURTH, keys), map(_FOURTH, keys)),
                b.counts.values(),
            )
        rows.sort()
        return rows

    @staticmethod
    def _upsert_rows(
        cur: sqlite3.Cursor, rows: list[tuple], totals: Optional[list[tuple]] = None, days: Optional[set[str]] = None
    ) -> None:
        """Upsert sorted rows and their all-project totals (computed here unless given, with the `days` the rows
        cover), leaving out days a backfill owns (looked up in this transaction, so a backfill between two slices
        of a block is respected)."""
        if days is None:
            days = {r[0] for r in rows}
        owned = {d for (d,) in cur.execute(*backfilled_among(sorted(days))).fetchall()} if rows or totals else ()
        if owned:
            rows = [r for r in rows if r[0] not in owned]
            totals = None if totals is None else [t for t in totals if t[0] not in owned]
        if totals is None:
            sums: dict = {}
            get = sums.get
            for day, _project, dim, cat, n in rows:
                k = (day, dim, cat)
                sums[k] = get(k, 0) + n
            totals = [(*k, n) for k, n in sorted(sums.items())]
        cur.executemany(
            "INSERT INTO daily (day, project, dimension, category, downloads) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (day, project, dimension, category) DO UPDATE SET downloads = downloads + excluded.downloads",
            rows,
        )
        cur.executemany(
            "INSERT INTO daily_totals (day, dimension, category, downloads) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (day, dimension, category) DO UPDATE SET downloads = downloads + excluded.downloads",
            totals,
        )

    SLICE_ROWS = 20_000  # ~0.2 s of upserts: the longest a window write waits for a block being applied

    def apply_in_slices(self, bucket: RollupBucket) -> Iterator[None]:
        """A block's rows, in key order, cut into slices of `SLICE_ROWS`; each slice is upserted in its own
        transaction together with a `rollup_slices` record, and the slices a previous attempt applied are
        skipped. The block's minutes are recorded (and its slice records dropped) in the last transaction. The
        rows and their order depend only on the block's counts, which are the same whenever it is re-sent.

        The block's all-project totals (`daily_totals`) go in with its minutes, in that last transaction, not
        slice by slice: a reader then never sees a day's totals holding part of a block whose minutes are not yet
        recorded as applied, so the totals plus the windows of the minutes not applied count every download once
        ("downloads today", `queries.downloads_today`)."""
        minutes = bucket.minutes()
        applied = self._applied_minutes(self.db, bucket)
        if applied == len(minutes):
            return
        if applied:
            raise partly_applied(bucket, applied)
        counts = bucket.counts
        if hasattr(counts, "rows"):  # the dataflow's blocks: each slice's rows and totals built when it is applied
            n = len(counts)

            def upsert(cur, lo, hi):
                self._upsert_rows(cur, counts.rows(lo, hi), [], counts.days)

            def totals(cur):
                self._upsert_rows(cur, [], counts.totals(0, n), counts.days)
        else:
            rows = self._rollup_rows([bucket])
            n = len(rows)
            days = {r[0] for r in rows}

            def upsert(cur, lo, hi):
                self._upsert_rows(cur, rows[lo:hi], [], days)

            def totals(cur):
                sums: dict = {}
                for day, _project, dim, cat, k in rows:
                    sums[(day, dim, cat)] = sums.get((day, dim, cat), 0) + k
                self._upsert_rows(cur, [], [(*key, k) for key, k in sorted(sums.items())], days)

        done = {s for (s,) in self.db.execute("SELECT slice FROM rollup_slices WHERE bucket = ?", (bucket.bucket,))}
        for i, lo in enumerate(range(0, n, self.SLICE_ROWS)):
            if i in done:
                continue
            with self._transaction() as cur:
                upsert(cur, lo, lo + self.SLICE_ROWS)
                cur.execute(
                    "INSERT INTO rollup_slices (bucket, slice, applied_at) VALUES (?, ?, ?)",
                    (bucket.bucket, i, time.time()),
                )
            yield
        with self._transaction() as cur:
            totals(cur)
            now = time.time()  # one time for the block's minutes, as `write` records them
            cur.executemany(
                "INSERT INTO rollup_buckets (bucket, applied_at) VALUES (?, ?)", [(m, now) for m in minutes]
            )
            cur.execute("DELETE FROM rollup_slices WHERE bucket = ?", (bucket.bucket,))
        yield

    @staticmethod
    def _applied_minutes(cur, bucket: RollupBucket) -> int:
        return cur.execute(
            "SELECT COUNT(*) FROM rollup_buckets WHERE bucket >= ? AND bucket < ?",
            (bucket.bucket, bucket.bucket + bucket.span),
        ).fetchone()[0]

    def prune(self, window_retention_s: float, rollup_retention_days: int) -> dict[str, int]:
        latest, latest_day = retention_anchors()
        newest = self.db.execute("SELECT MAX(start) FROM windows WHERE start <= ?", (latest,)).fetchone()[0]
        removed = {"windows": 0, "daily": 0}
        if newest is not None:
            removed["windows"] = self.db.execute(
                "DELETE FROM windows WHERE start < ?", (newest - window_retention_s,)
            ).rowcount
        newest_day = self.db.execute("SELECT MAX(day) FROM daily WHERE day <= ?", (latest_day,)).fetchone()[0]
        if newest_day is not None:
            cutoff = (datetime.fromisoformat(newest_day) - timedelta(days=rollup_retention_days)).date().isoformat()
            removed["daily"] = self.db.execute("DELETE FROM daily WHERE day <= ?", (cutoff,)).rowcount
            self.db.execute("DELETE FROM daily_totals WHERE day <= ?", (cutoff,))
            self.db.execute(*prune_backfilled_statement(cutoff))
            self.db.execute(*prune_buckets_statement(cutoff))
        return removed

    def _execute_in_transaction(self, statements: list[tuple[str, tuple]]) -> None:
        with self._transaction() as cur:
            for sql, params in statements:
                cur.execute(sql, params)

    def _execute_many_in_transaction(self, statements: list[tuple[str, list[tuple]]]) -> None:
        with self._transaction() as cur:
            for sql, params in statements:
                cur.executemany(sql, params)

    def backfill_day(self, day: str, rows, source: str) -> int:
        statements = backfill_statements(day, rows, source)
        with self._transaction() as cur:
            for sql, params in statements:
                cur.executemany(sql, params)
        return len(statements[2][1])

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

    def daily(self, project, dimension, start_day, end_day):
        if project is None:
            rows = self.db.execute(
                "SELECT day, NULL, category, downloads FROM daily_totals WHERE dimension = ? AND day >= ? AND day <= ? ORDER BY day, category",
                (dimension, start_day, end_day),
            ).fetchall()
        else:
            days, params = self.project_days(start_day, end_day)
            rows = self.db.execute(
                f"SELECT day, project, category, downloads FROM daily WHERE project = ? AND dimension = ? AND {days} "
                "ORDER BY day, category",
                (project, dimension, *params),
            ).fetchall()
        return [(d, p, from_db_category(c), n) for d, p, c, n in rows]

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        self.db.close()
