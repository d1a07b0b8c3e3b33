"""PostgreSQL sink: the production backend, with the same idempotent semantics as the SQLite one.

One writer (the dataflow) and any number of readers (CLI, API, dashboard, metrics). Writes are one transaction
each: windows are upserted (a replayed window replaces its row), rollup buckets are claimed in `rollup_buckets`
with ON CONFLICT DO NOTHING so that only unseen ones add to the daily tables, and because every write is
idempotent a write that failed on a dropped connection is simply retried once on a fresh connection.
Bulk rows go through COPY into per-connection temporary tables and one INSERT ... ON CONFLICT per table, so a
write costs a handful of round trips however many rows it carries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Optional, TypeVar

import orjson
import psycopg
import structlog

from pypi_pulse.errors import UserError
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.model import PipelineStats, WindowRow
from pypi_pulse.sink.postgres_connection import (
    connect,
    require_schema,
    scalar,
    translate_placeholders,
    warn_on_collation,
)
from pypi_pulse.sink.retry import SinkUnavailable
from pypi_pulse.sink.rollup import retention_anchors
from pypi_pulse.sink.schema import MIGRATIONS, migration_script

log = structlog.get_logger(__name__)

T = TypeVar("T")


# Staging tables live for the connection; ON COMMIT DELETE ROWS empties them after every write.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_windows (LIKE windows) ON COMMIT DELETE ROWS;
"""


COPY_MIN_ROWS = 200  # measured (benchmarks/sink_write.py machine): executemany wins below ~250 windows, COPY above
_UPSERT_WINDOW = (
    "ON CONFLICT (start) DO UPDATE SET downloads = excluded.downloads, "
    "unique_packages = excluded.unique_packages, countries = excluded.countries, top = excluded.top, "
    "written_at = excluded.written_at"
)


class PostgresSink(Sink):
    concurrent_writers = True

    def __init__(self, url: str, *, readonly: bool = False):
        self.url = url
        self.readonly = readonly
        self._reconnect_lock = threading.Lock()
        self.conn = self._open()

    def _open(self) -> psycopg.Connection:
        conn = connect(self.url, readonly=self.readonly)
        try:
            if self.readonly:
                require_schema(conn, self.url)
            else:
                self._migrate(conn)
                conn.execute(_STAGING)
                warn_on_collation(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: psycopg.Connection) -> None:
        """Apply pending migrations in one transaction under an advisory lock: two processes starting together
        (the supervisor's check and the dataflow) neither race on CREATE TABLE nor apply a migration twice."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('pypi-pulse.schema.' || current_schema()))")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = scalar(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    if sql := migration_script(script, "postgresql"):
                        conn.execute(sql)
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                    log.info("sink.migrated", backend="postgresql", version=version)

    def _retry_once(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run fn; if the connection died under it, reconnect and run it again (safe: every write is idempotent).
        Readers may share one sink across threads: only the first to notice a dead connection replaces it."""
        conn = self.conn
        try:
            return fn(conn)
        except psycopg.OperationalError:
            if not conn.broken and not conn.closed:
                raise
            with self._reconnect_lock:
                if self.conn is conn:
                    log.info("sink.reconnect", backend="postgresql")
                    conn.close()
                    try:
                        self.conn = self._open()
                    except UserError as exc:  # e.g. refused while the server restarts: the caller may retry
                        raise SinkUnavailable(str(exc)) from None
            return fn(self.conn)

    # ---- writes -------------------------------------------------------------------------------------------
    def write(self, windows: list[WindowRow], stats: Optional[PipelineStats]) -> None:
        latest = {w.start: w for w in windows}  # the last version of a window in the list wins, as with SQLite
        self._retry_once(lambda conn: self._write(conn, list(latest.values()), stats))

    def _write(
        self,
        conn: psycopg.Connection,
        windows: list[WindowRow],
        stats: Optional[PipelineStats],
    ) -> None:
        now = time.time()
        with conn.transaction(), conn.cursor() as cur:
            if windows:
                rows = [
                    (
                        w.start,
                        w.downloads,
                        w.unique_packages,
                        orjson.dumps(w.countries).decode(),
                        orjson.dumps(w.top).decode(),
                        now,
                    )
                    for w in sorted(windows, key=lambda w: w.start)
                ]
                if len(rows) >= COPY_MIN_ROWS and not self.readonly:  # a replay: COPY, then one upsert
                    with cur.copy(
                        "COPY stage_windows (start, downloads, unique_packages, countries, top, written_at) FROM STDIN"
                    ) as cp:
                        for row in rows:
                            cp.write_row(row)
                    cur.execute(f"INSERT INTO windows SELECT * FROM stage_windows ORDER BY start {_UPSERT_WINDOW}")
                else:  # live: a few windows, one pipelined round trip
                    cur.executemany(
                        "INSERT INTO windows (start, downloads, unique_packages, countries, top, written_at) "
                        f"VALUES (%s, %s, %s, %s, %s, %s) {_UPSERT_WINDOW}",
                        rows,
                    )
            if stats is not None:
                cur.execute(
                    "INSERT INTO pipeline_stats (id, counters, offsets, watermark, updated_at) VALUES (1, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET counters = excluded.counters, offsets = excluded.offsets, "
                    "watermark = excluded.watermark, updated_at = excluded.updated_at",
                    (
                        orjson.dumps(stats.counters).decode(),
                        orjson.dumps({str(k): v for k, v in stats.offsets.items()}).decode(),
                        stats.watermark,
                        stats.updated_at or now,
                    ),
                )

    def prune_windows(self, window_retention_s: float) -> int:
        """Retention counts back from the newest data, not the wall clock, so a replayed old export keeps its rows."""

        def run(conn: psycopg.Connection) -> int:
            with conn.transaction(), conn.cursor() as cur:
                latest, _ = retention_anchors()
                newest = scalar(cur.execute("SELECT MAX(start) FROM windows WHERE start <= %s", (latest,)))
                if newest is None:
                    return 0
                cur.execute("DELETE FROM windows WHERE start < %s", (newest - window_retention_s,))
                return cur.rowcount

        return self._retry_once(run)

    def _execute_in_transaction(self, statements: list[tuple[str, tuple]]) -> None:
        def run(conn: psycopg.Connection) -> None:
            with conn.transaction(), conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(translate_placeholders(sql), params)

        self._retry_once(run)  # folding is idempotent (the day is marked in the same transaction)

    def _execute_many_in_transaction(self, statements: list[tuple[str, list[tuple]]]) -> None:
        def run(conn: psycopg.Connection) -> None:
            with conn.transaction(), conn.cursor() as cur:
                for sql, params in statements:
                    if params:
                        cur.executemany(translate_placeholders(sql), params)

        self._retry_once(run)  # callers pass statements that replace what they write, so a retry is safe

    # ---- reads --------------------------------------------------------------------------------------------
    @staticmethod
    def _row(r) -> WindowRow:
        return WindowRow(r[0], r[1], r[2], orjson.loads(r[3]), [tuple(t) for t in orjson.loads(r[4])])

    def _fetch(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._retry_once(lambda conn: conn.execute(sql, params).fetchall())

    def windows(self, start: int, end: int) -> list[WindowRow]:
        rows = self._fetch(
            "SELECT start, downloads, unique_packages, countries, top FROM windows WHERE start >= %s AND start < %s "
            "ORDER BY start",
            (start, end),
        )
        return [self._row(r) for r in rows]

    def latest_windows(self, n: int) -> list[WindowRow]:
        rows = self._fetch(
            "SELECT start, downloads, unique_packages, countries, top FROM windows ORDER BY start DESC LIMIT %s", (n,)
        )
        return [self._row(r) for r in reversed(rows)]

    def stats(self) -> Optional[PipelineStats]:
        rows = self._fetch("SELECT counters, offsets, watermark, updated_at FROM pipeline_stats WHERE id = 1")
        if not rows:
            return None
        r = rows[0]
        return PipelineStats(orjson.loads(r[0]), {int(k): v for k, v in orjson.loads(r[1]).items()}, r[2], r[3])

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._fetch(translate_placeholders(sql), tuple(params))

    def close(self) -> None:
        self._close_history()
        self.conn.close()
