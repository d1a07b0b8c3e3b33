"""Reading the history with DuckDB, in process and read-only: the API, the dashboard and the exporter query it as
tables, with the portable SQL they use for the sink (`?` placeholders).

Relations, refreshed whenever the set of files changes (files are immutable, so a file's footer is read once):
- `daily (day, project, dimension, category, downloads)`: one row per key and day, summed over the day's files
  (its day file, else its blocks, which each hold a part of the day), category NULL shown as '' as in the sink's
  tables; `day` is a DATE (filters on it reach the Parquet scan), and
  query results give days as 'YYYY-MM-DD' strings;
- `daily_totals (day, dimension, category, downloads)`: all-project totals, from the files' footers;
- `history_days (day, source, folded_below, complete)`, and as the sink had them `backfilled_days (day, source)`
  and `compacted_days (day, min_daily_downloads)`.

One reader serves a process's questions for as long as it runs, so what every question would otherwise read again
is kept: DuckDB keeps the files' footers (row group statistics), and the reader keeps every project's `overall`
and `with_mirrors` downloads per day in memory (`series_of`, sink/history_series.py), which answer a package's
trend, the pypistats `overall` and `recent` endpoints and a category's top without reading the files; as many of
the newest days as `series_bytes` (setting `history_series_mib`) holds, the files answering for the others.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Optional, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pypi_pulse.config_serving import DEFAULT_HISTORY_SERIES_MIB
from pypi_pulse.sink.history import DAY_FILE, FOLDED_KEY, SCHEMA, SOURCE_KEY, STREAM, TOTALS_KEY, DayFiles, History
from pypi_pulse.sink.history_series import SeriesIndex
from pypi_pulse.sink.queries import SERIES_DIMENSIONS

T = TypeVar("T")

_VIEWS = """
CREATE OR REPLACE VIEW daily AS
    SELECT day, project, dimension, coalesce(category, '') AS category, downloads FROM day_rows
    UNION ALL
    SELECT day, project, dimension, coalesce(category, '') AS category, CAST(SUM(downloads) AS BIGINT) AS downloads
    FROM block_rows GROUP BY day, project, dimension, coalesce(category, '');
CREATE OR REPLACE VIEW backfilled_days AS SELECT day, source FROM history_days WHERE complete AND source <> 'stream';
CREATE OR REPLACE VIEW compacted_days AS
    SELECT day, folded_below AS min_daily_downloads FROM history_days WHERE complete AND folded_below > 0;
"""
_TOTALS = pa.schema(
    [("day", pa.date32()), ("dimension", pa.string()), ("category", pa.string()), ("downloads", pa.int64())]
)
_DAYS = pa.schema(
    [("day", pa.date32()), ("source", pa.string()), ("folded_below", pa.int64()), ("complete", pa.bool_())]
)


def _iso(value: Any) -> Any:
    return value.isoformat() if type(value) is dt.date else value


class HistoryReader:
    """One DuckDB connection over a history; thread-safe (one query at a time; DuckDB parallelises each)."""

    def __init__(self, history: History, threads: int = 2, series_bytes: int = DEFAULT_HISTORY_SERIES_MIB * 2**20):
        self.history = history
        self.threads = threads
        self.con = self._connect()
        self._stamps: dict[tuple[str, str], tuple] = {}  # (day, name) -> (size, mtime ns) as last listed
        self.lock = threading.Lock()
        _OPEN.add(self)
        self._key: tuple = ()
        self._meta: dict[tuple, dict[bytes, bytes]] = {}  # (day, name, size, mtime): a day file can be replaced
        self.days: list[DayFiles] = []
        self.series = SeriesIndex(series_bytes)
        self._load([])

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A connection that keeps the files' footers between questions (each reads every day file's)."""
        con = duckdb.connect(":memory:", config={"threads": self.threads})
        con.execute("SET parquet_metadata_cache = true")
        return con

    def _footer(self, files: DayFiles, name: str) -> dict[bytes, bytes]:
        day = files.day
        key = (day, name, *files.stamps.get(name, (0, 0)))
        if key not in self._meta:
            self._meta[key] = self.history.metadata(day, name)
        return self._meta[key]

    def _rows(self, name: str, paths: list[str]) -> None:
        """View `name` over these files: DuckDB's own Parquet reader for local files (it skips row groups and files by
        their statistics, in parallel), an Arrow dataset for other filesystems (object stores through pyarrow)."""
        if paths and isinstance(self.history.fs, pafs.LocalFileSystem):
            files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            source = f"read_parquet([{files}])"
        else:
            self.con.register(
                f"{name}_files", ds.dataset(paths, schema=SCHEMA, format="parquet", filesystem=self.history.fs)
            )
            source = f"{name}_files"
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source}")

    def _load(self, listing: list[DayFiles]) -> None:
        stamps = {(d.day, name): stamp for d in listing for name, stamp in d.stamps.items()}
        if any(stamps.get(k) != stamp for k, stamp in self._stamps.items()):
            # DuckDB keeps each file's footer by path and modification second, and keeps it after the file is gone:
            # a file replaced under the same path (a backfill's or a refold's day file) within that second would be
            # read with the old footer, and the footers of compacted blocks would pile up; a file replaced or
            # removed starts a new connection, which reads the current files' footers again (the caller holds the
            # lock, as for every read)
            self.con.close()
            self.con = self._connect()
        self._stamps = stamps
        self._rows("day_rows", [self.history.path(d.day, DAY_FILE) for d in listing if d.day_file])
        self._rows("block_rows", [self.history.path(d.day, f) for d in listing if not d.day_file for f in d.files])
        totals: dict[tuple, int] = defaultdict(int)
        days = []
        for d in listing:
            day = dt.date.fromisoformat(d.day)
            for name in d.files:
                for dim, cat, n in json.loads(self._footer(d, name).get(TOTALS_KEY, b"[]")):
                    totals[(day, dim, cat or "")] += n
            meta = self._footer(d, DAY_FILE) if d.day_file else {}
            source = meta.get(SOURCE_KEY, STREAM.encode()).decode()
            days.append((day, source, int(meta.get(FOLDED_KEY, b"0") or 0), bool(d.day_file)))
        keys = sorted(totals)
        totals_table = pa.Table.from_arrays(
            [pa.array([k[i] for k in keys], _TOTALS.field(i).type) for i in range(3)]
            + [pa.array([totals[k] for k in keys], pa.int64())],
            schema=_TOTALS,
        )
        days_table = pa.Table.from_arrays(
            [pa.array([r[i] for r in days], _DAYS.field(i).type) for i in range(4)], schema=_DAYS
        )
        self.con.register("daily_totals", totals_table)
        self.con.register("history_days", days_table)
        self.con.execute(_VIEWS)
        live = {(d.day, f, *d.stamps.get(f, (0, 0))) for d in listing for f in d.files}
        self._meta = {k: v for k, v in self._meta.items() if k in live}
        self.days = listing
        self.series.forget({d.day: [(d.day, f, *d.stamps.get(f, (0, 0))) for f in d.files] for d in listing})

    def refresh(self) -> None:
        listing = self.history.listing()
        key = tuple((d.day, tuple((f, d.stamps.get(f)) for f in d.files)) for d in listing)
        if key != self._key:
            self._load(listing)
            self._key = key

    def _current(self, read: Callable[[], T]) -> T:
        """`read()` over the current files (the caller holds the lock); a file removed by a compaction meanwhile is
        read again from the new listing (the day file that replaced it)."""
        for attempt in range(3):
            self.refresh()
            try:
                return read()
            except (duckdb.IOException, FileNotFoundError, OSError):
                if attempt == 2:
                    raise
                self._key = ()
        raise AssertionError("unreachable")

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Rows of `sql` over the current files."""
        with self.lock:
            rows = self._current(lambda: self.con.execute(sql, list(params)).fetchall())
        return [tuple(map(_iso, r)) for r in rows]

    def series_of(
        self, first: Optional[str], last: Optional[str], answer: Callable[[SeriesIndex, list[str]], T]
    ) -> Optional[T]:
        """`answer(series, days)` over the days of [first, last] (None: open) the history holds, from the in-memory
        series of `overall` and `with_mirrors` (sink/history_series.py), read first where missing; None when a
        file's series cannot be held (the caller then asks the files)."""
        with self.lock:

            def read() -> list[str]:
                days = [
                    d.day for d in self.days if (first is None or d.day >= first) and (last is None or d.day <= last)
                ]
                self.series.load(days, self._series_rows)
                return days

            days = self._current(read)
            return answer(self.series, days) if self.series.servable(days) else None

    def _series_rows(self, versions: list[tuple]) -> Iterator[tuple[tuple, pa.Table]]:
        """Each file's rows of the series' dimensions: DuckDB's Parquet reader for local files, else pyarrow."""
        columns = ["project", "dimension", "category", "downloads"]
        dims = ", ".join(f"'{d}'" for d in SERIES_DIMENSIONS)
        for version in versions:
            if isinstance(self.history.fs, pafs.LocalFileSystem):
                yield (
                    version,
                    self.con.sql(
                        f"SELECT {', '.join(columns)} FROM read_parquet(?) WHERE dimension IN ({dims})",
                        params=[self.history.path(version[0], version[1])],
                    ).to_arrow_table(),
                )
            else:
                table = self.history.read(version[0], version[1]).select(columns)
                yield version, table.filter(pc.is_in(table["dimension"], pa.array(SERIES_DIMENSIONS)))

    def covered(self, day: str) -> list[tuple[int, int]]:
        """The event-time ranges of `day` the history holds (as of the last refresh)."""
        with self.lock:
            self.refresh()
            return next((d.covered() for d in self.days if d.day == day), [])

    def close(self) -> None:
        self.con.close()
        _OPEN.discard(self)  # closed: nothing for the exit hook to interrupt


_OPEN: weakref.WeakSet[HistoryReader] = weakref.WeakSet()


@atexit.register
def _stop_queries_before_exit() -> None:
    """A query still running in a daemon thread when the interpreter shuts down reads its Arrow stream through
    Python that is going away, and DuckDB aborts the process (SIGABRT, not the exit status asked for): interrupt
    every reader's query and close it once the query has let go."""
    deadline = time.monotonic() + 5
    for reader in list(_OPEN):
        while True:
            reader.con.interrupt()  # the query running now, if any; a thread may start another before the lock
            if reader.lock.acquire(timeout=0.05):
                try:
                    reader.con.close()
                finally:
                    reader.lock.release()
                break
            if time.monotonic() > deadline:
                break
