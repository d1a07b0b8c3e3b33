"""The storage contract shared by the SQLite (embedded) and PostgreSQL (production) sinks.

Writes are idempotent: a window row is keyed by its start second and a replay overwrites it; a rollup bucket is
applied at most once. Reads serve the CLI, the JSON API, the dashboard and the metrics exporter.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from typing import Optional

from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow


class Sink(abc.ABC):
    url: str
    # Whether two connections can write at once (PostgreSQL), or take turns at one lock (SQLite): a second writer
    # (dataflow/block_writer.py) then shares a lock with the dataflow so that a window write waits one slice at most.
    concurrent_writers = False

    # writes (one writer: the dataflow)
    @abc.abstractmethod
    def write(self, windows: list[WindowRow], buckets: list[RollupBucket], stats: Optional[PipelineStats]) -> None:
        """Upsert windows, apply unseen rollup buckets and store counters, in one transaction."""

    def apply_in_slices(self, bucket: RollupBucket) -> Iterator[None]:
        """Apply a sealed rollup bucket, yielding between slices of it so that the caller can write windows
        meanwhile; exactly once, whether or not a previous attempt was cut short. This default applies it whole."""
        self.write([], [bucket], None)
        yield

    def set_lock_wait(self, seconds: float) -> None:  # noqa: B027 - a no-op but for SQLite, not abstract
        """How long a write waits for another connection's lock before it fails (and is retried: sink/retry.py);
        only SQLite has one lock for all writers."""

    def applied_buckets(self, buckets: list[int]) -> set[int]:
        """Which of these bucket starts are applied (a bucket's minutes are recorded together, once it is whole)."""
        if not buckets:
            return set()
        marks = ", ".join("?" for _ in buckets)
        return {
            int(b)
            for (b,) in self.query(f"SELECT bucket FROM rollup_buckets WHERE bucket IN ({marks})", tuple(buckets))
        }

    @abc.abstractmethod
    def prune(self, window_retention_s: float, rollup_retention_days: int) -> dict[str, int]:
        """Drop windows older than the newest window minus the retention, and old daily rollups."""

    def backfill_day(self, day: str, rows: Iterable[tuple[Optional[str], str, Optional[str], int]], source: str) -> int:
        """Make `day` hold exactly these (project, dimension, category, downloads) rows and mark it backfilled.

        One transaction running `sink.rollup.backfill_statements`; returns the number of per-project rows.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backfill_day (see sink/rollup.py)")

    def compact(self, min_daily_downloads: int) -> int:
        """Fold the fine detail of small projects on complete days (see sink/rollup.py); returns days compacted."""
        import time as _time

        from pypi_pulse.sink.rollup import DAYS_TO_COMPACT, compact_day_statements

        if min_daily_downloads <= 0:
            return 0
        days = [r[0] for r in self.query(DAYS_TO_COMPACT)]
        for day in days:
            self._execute_in_transaction(compact_day_statements(day, min_daily_downloads, _time.time()))
        return len(days)

    @abc.abstractmethod
    def _execute_in_transaction(self, statements: list[tuple[str, tuple]]) -> None:
        """Run `?`-placeholder statements in one transaction."""

    @abc.abstractmethod
    def _execute_many_in_transaction(self, statements: list[tuple[str, list[tuple]]]) -> None:
        """Run each `?`-placeholder statement once per parameter tuple, all in one transaction."""

    # reads
    @abc.abstractmethod
    def windows(self, start: int, end: int) -> list[WindowRow]:
        """Windows with start <= window start < end, oldest first."""

    @abc.abstractmethod
    def latest_windows(self, n: int) -> list[WindowRow]:
        """The newest n windows, oldest first."""

    @abc.abstractmethod
    def stats(self) -> Optional[PipelineStats]: ...

    @abc.abstractmethod
    def daily(
        self, project: Optional[str], dimension: str, start_day: str, end_day: str
    ) -> list[tuple[str, str, Optional[str], int]]:
        """(day, project, category, downloads) rows of one dimension, optionally for one project."""

    def project_days(self, start_day: str, end_day: str) -> tuple[str, tuple]:
        """("day IN (?, ...)", days): the SQL condition, and its parameters, selecting the calendar days of
        [start_day, end_day] that can hold rollups (clamped to the oldest and newest stored day).

        One project's rows are read through it: SQLite's `daily` is clustered by day first with no project index
        (sink/schema.py, migration 7), so the query seeks (day, project, dimension) once per day instead of
        scanning every project's rows of the period."""
        import datetime as dt

        ((lo, hi),) = self.query("SELECT MIN(day), MAX(day) FROM daily_totals")
        days: list[str] = []
        if lo is not None:
            first, last = dt.date.fromisoformat(max(start_day, lo)), dt.date.fromisoformat(min(end_day, hi))
            days = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        return f"day IN ({', '.join('?' for _ in days) or 'NULL'})", tuple(days)

    @abc.abstractmethod
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run a read query written once for both backends: `?` placeholders, portable SQL."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_sink(url: str, *, readonly: bool = False) -> Sink:
    """`sqlite:///path.db` (embedded default) or `postgresql://...` (production)."""
    from pypi_pulse.errors import UserError

    if url.startswith("sqlite:///"):
        from pypi_pulse.sink.sqlite import SQLiteSink

        return SQLiteSink(url, readonly=readonly)
    if url.startswith(("postgresql://", "postgres://")):
        from pypi_pulse.extras import require

        require("postgres")
        from pypi_pulse.sink.postgres import PostgresSink

        return PostgresSink(url, readonly=readonly)
    raise UserError(f"unsupported sink {url!r}: use sqlite:///PATH.db or postgresql://user:pass@host:5432/db")
