"""The storage contract shared by the SQLite (embedded) and PostgreSQL (production) sinks.

Writes are idempotent: a window row is keyed by its start second and a replay overwrites it; a rollup bucket is
applied at most once. Reads serve the CLI, the JSON API, the dashboard and the metrics exporter.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow
from pypi_pulse.sink.rollup import bucket_rows, partly_applied
from pypi_pulse.sink.schema import from_db_category

if TYPE_CHECKING:  # pyarrow and DuckDB load with the first use of the history: a process that never reads it
    # (a server worker answering sign-ins, a status command) does not carry their ~80 MiB
    from pypi_pulse.sink.history import History
    from pypi_pulse.sink.history_reader import HistoryReader


class Sink(abc.ABC):
    """Windows and counters in a database (this class's backends); the rollup history in Parquet files beside it
    (`history`, sink/history.py), which the sink's rollup methods write and read so that every caller keeps one
    object for both."""

    url: str
    _history: Optional[History] = None
    _history_at: tuple = (None, False)  # (location, read-only) until the history is first used
    _history_reader: Optional[HistoryReader] = None

    def attach_history(self, location: Optional[str | Path], readonly: bool = False) -> None:
        """Where this sink's rollups live: `location`, else beside a SQLite file (DIR/history for DIR/x.db), else
        DATA_DIR/history of the default data directory. A read-only sink's history refuses writes too."""
        self._history, self._history_at = None, (location or default_history(self.url), readonly)

    @property
    def history(self) -> History:
        if self._history is None:
            from pypi_pulse.sink.history import History

            location, readonly = self._history_at
            self._history = History(location, readonly=readonly)
        return self._history

    @history.setter
    def history(self, history: History) -> None:
        self._history = history

    # writes (one writer: the dataflow)
    @abc.abstractmethod
    def write(self, windows: list[WindowRow], stats: Optional[PipelineStats]) -> None:
        """Upsert windows and store counters in one transaction. Sealed rollup blocks go to the history apart
        (`write_buckets`), before any counters that say they are sealed."""

    def write_buckets(self, buckets: list[RollupBucket]) -> None:
        """Each sealed bucket as its block file, once: the same bucket again is already counted (a block sealed again
        after a restore has the same rows; a dataflow started afresh on a topic that lost events to retention must
        not replace it with fewer), as is one inside an applied block, and one overlapping applied blocks (or an
        earlier bucket of the same call) in part is refused. All are checked before any is written, so a refused
        call writes none. A shard's part of a block (`part`) is written unless that part's file is there."""
        covered: dict[str, list[tuple[int, int]]] = {}  # day -> its applied ranges, then this call's
        todo: list[RollupBucket] = []
        seen: set[tuple] = set()
        for b in buckets:
            if (b.bucket, b.part) in seen:
                continue
            seen.add((b.bucket, b.part))
            day = day_of(b.bucket)
            if b.part is not None:
                files = self.history.day_files(day)
                if not files.day_file and not files.has(b.bucket, b.span, b.part):
                    todo.append(b)
                continue
            end = b.bucket + b.span
            ranges = covered.setdefault(day, self.history.day_files(day).covered())
            if (b.bucket, end) in ranges:
                continue
            overlap = sum(max(0, min(e, end) - max(s, b.bucket)) for s, e in ranges) // 60
            if overlap == b.span // 60:
                continue
            if overlap:
                raise partly_applied(b, overlap)
            ranges.append((b.bucket, end))
            todo.append(b)
        for b in todo:
            self.history.write_block(b.bucket, b.span, bucket_rows(b), b.part)

    def set_lock_wait(self, seconds: float) -> None:  # noqa: B027 - a no-op but for SQLite, not abstract
        """How long a write waits for another connection's lock before it fails (and is retried: sink/retry.py);
        only SQLite has one lock for all writers."""

    @abc.abstractmethod
    def prune_windows(self, window_retention_s: float) -> int:
        """Drop windows older than the newest window minus the retention; returns how many."""

    def prune(self, window_retention_s: float, rollup_retention_days: int) -> dict[str, int]:
        """Drop old windows, and whole days of history older than the newest day minus the retention (counted
        back from the newest data no later than the wall clock: sink/rollup.retention_anchors)."""
        import datetime as dt

        from pypi_pulse.sink.rollup import retention_anchors

        removed = {"windows": self.prune_windows(window_retention_s), "daily": 0}
        _, latest_day = retention_anchors()
        days = [d for d in self.history.days() if d <= latest_day]
        if days:
            cutoff = (dt.date.fromisoformat(days[-1]) - dt.timedelta(days=rollup_retention_days)).isoformat()
            removed["daily"] = self.history.drop_through(cutoff)
        return removed

    def backfill_day(self, day: str, rows: Iterable[tuple], source: str) -> int:
        """Make `day` hold exactly these (project, dimension, category, downloads[, in_totals]) rows, whatever the
        stream wrote or writes for it (sink/rollup.backfill_table); returns the number of per-project rows."""
        from pypi_pulse.sink.rollup import backfill_table

        table, totals = backfill_table(rows)
        self.history.write_day(day, table, totals, source)
        return table.num_rows

    def compact(self, min_daily_downloads: int, complete_before: Optional[float] = None) -> int:
        """Compact every complete day into its day file, folding the fine detail of projects under
        `min_daily_downloads`; returns the days compacted or folded. Complete: ending by `complete_before` (the
        dataflow's mark that every block before it has left every shard), else each day before the newest."""
        days = self.history.days()
        if complete_before is not None:
            complete = [d for d in days if _day_end(d) <= complete_before]
        else:
            complete = days[:-1]
        done = 0
        for day in complete:
            done += self.history.compact(day, min_daily_downloads) or self.history.refold(day, min_daily_downloads)
        return done

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

    def daily(
        self, project: Optional[str], dimension: str, start_day: str, end_day: str
    ) -> list[tuple[str, Optional[str], Optional[str], int]]:
        """(day, project, category, downloads) rows of one dimension, optionally for one project."""
        if project is None:
            sql = (
                "SELECT day, NULL, category, downloads FROM daily_totals WHERE dimension = ? AND day >= ? "
                "AND day <= ? ORDER BY day, category"
            )
            rows = self.history_query(sql, (dimension, start_day, end_day))
        else:
            sql = (
                "SELECT day, project, category, downloads FROM daily WHERE project = ? AND dimension = ? "
                "AND day >= ? AND day <= ? ORDER BY day, category"
            )
            rows = self.history_query(sql, (project, dimension, start_day, end_day))
        return [(d, p, from_db_category(c), n) for d, p, c, n in rows]

    def project_days(self, start_day: str, end_day: str) -> tuple[str, tuple]:
        """("day IN (?, ...)", days): the SQL condition, and its parameters, selecting the calendar days of
        [start_day, end_day] that can hold rollups (clamped to the oldest and newest day of the history)."""
        import datetime as dt

        ((lo, hi),) = self.history_query("SELECT MIN(day), MAX(day) FROM daily_totals")
        days: list[str] = []
        if lo is not None:
            first, last = dt.date.fromisoformat(max(start_day, lo)), dt.date.fromisoformat(min(end_day, hi))
            days = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        return f"day IN ({', '.join('?' for _ in days) or 'NULL'})", tuple(days)

    def history_query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Run a read query on the history's tables (sink/history_reader.py): `daily`, `daily_totals`,
        `history_days`, `backfilled_days`, `compacted_days`; the same portable SQL as `query`."""
        if self._history_reader is None:
            from pypi_pulse.sink.history_reader import HistoryReader

            self._history_reader = HistoryReader(self.history)
        return self._history_reader.query(sql, params)

    def history_series(self, first: Optional[str], last: Optional[str], answer):
        """`answer(series, days)` from the history reader's in-memory `overall`/`with_mirrors` series over the days
        of [first, last] (sink/history_series.py), or None when they cannot answer (then ask `history_query`)."""
        if self._history_reader is None:
            self.history_query("SELECT 1")  # makes the reader
        assert self._history_reader is not None
        return self._history_reader.series_of(first, last, answer)

    def _close_history(self) -> None:
        """The history reader's DuckDB connection goes with the sink (a backend's `close` calls this)."""
        reader, self._history_reader = self._history_reader, None
        if reader is not None:
            reader.close()

    def history_covered(self, day: str) -> list[tuple[int, int]]:
        """The [start, end) event-time ranges of `day` whose counts the history holds."""
        if self._history_reader is None:
            from pypi_pulse.sink.history_reader import HistoryReader

            self._history_reader = HistoryReader(self.history)
        return self._history_reader.covered(day)

    @abc.abstractmethod
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run a read query written once for both backends: `?` placeholders, portable SQL."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def day_of(second: int) -> str:
    """The UTC day 'YYYY-MM-DD' of an epoch second (sink/history.day_of, without loading pyarrow)."""
    import datetime as dt

    return (dt.date(1970, 1, 1) + dt.timedelta(days=second // 86400)).isoformat()


def _day_end(day: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()) + 86400


def default_history(url: str) -> Path:
    """DIR/history beside a SQLite sink DIR/x.db (DATA_DIR/history on the defaults); for PostgreSQL, the default
    data directory's. Commands pass `--history` (settings.history_path) explicitly."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent / "history"
    from pypi_pulse.config import DEFAULT_DATA_DIR

    return Path(DEFAULT_DATA_DIR) / "history"


def open_sink(url: str, *, readonly: bool = False, history: Optional[str | Path] = None) -> Sink:
    """`sqlite:///path.db` (embedded default) or `postgresql://...` (production), with its rollup history at
    `history` (default: `default_history`)."""
    from pypi_pulse.errors import UserError

    sink: Sink
    if url.startswith("sqlite:///"):
        from pypi_pulse.sink.sqlite import SQLiteSink

        sink = SQLiteSink(url, readonly=readonly)
    elif url.startswith(("postgresql://", "postgres://")):
        from pypi_pulse.extras import require

        require("postgres")
        from pypi_pulse.sink.postgres import PostgresSink

        sink = PostgresSink(url, readonly=readonly)
    else:
        raise UserError(f"unsupported sink {url!r}: use sqlite:///PATH.db or postgresql://user:pass@host:5432/db")
    sink.attach_history(history, readonly=readonly)
    return sink
