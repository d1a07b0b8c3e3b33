"""Reading PyPI downloads from BigQuery: rows incrementally for the stream, counts per day for the backfill.

Rows are loaded into the table in batches minutes after the downloads, so the incremental reader re-reads an
overlap window behind its watermark and removes what it already returned (multiset difference on the row content:
two identical downloads in the same microsecond stay two).

Every query runs through `bigquery_costs.BigQuerySession` (dry run, budget, capped run, accounting) and is written
in `bigquery_query`; the client and its errors are `bigquery_client`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import orjson
import structlog
from prometheus_client import Counter as PromCounter

from pypi_pulse.errors import UserError
from pypi_pulse.events import format_bigquery_ts
from pypi_pulse.producer.bigquery_costs import BigQuerySession, session_for
from pypi_pulse.producer.bigquery_query import COLUMNS, aggregates_query, event_dict, rows_query, time_range

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from pypi_pulse.config import Settings

log = structlog.get_logger(__name__)

ROWS_NEW = PromCounter("pypi_pulse_bigquery_rows_new", "Rows kept after removing overlap re-reads.")


def table_columns(table) -> tuple[list[int], list[str], list[list]]:
    """Event times (epoch µs), timestamps as BigQuery writes them (vectorised `format_bigquery_ts`), other columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = table.column("timestamp").cast(pa.timestamp("us", tz="UTC"))
    text = pc.strftime(ts, format="%Y-%m-%d %H:%M:%S UTC").to_pylist()
    micros = ts.cast(pa.int64()).to_pylist()
    others = [table.column(name).to_pylist() for name in COLUMNS if name != "timestamp"]
    return micros, text, others


@dataclass(order=True)
class Event:
    epoch: float
    seq: int
    value: bytes
    key: bytes


class IncrementalReader:
    """Watermark + overlap + de-duplication over [start, end): every row is returned once, late loads included.

    Whole days wholly behind `now - overlap` are read one query per day (a query bills each day it touches anyway);
    after that, each poll reads [watermark - overlap, now).
    """

    def __init__(
        self,
        session: BigQuerySession,
        start: float,
        end: Optional[float],
        overlap_s: float,
        exporter: Optional[ParquetExport] = None,
    ):
        self.session = session
        self.settings = session.settings
        self.sql, self.params = rows_query(self.settings)
        self.end = end
        self.overlap = overlap_s
        self.done_until = start  # everything before this is final and was returned
        self.watermark = start  # latest event time returned
        self.seen: dict[bytes, tuple[int, float]] = {}  # row digest -> (times returned, event time)
        self.exporter = exporter
        self._seq = 0
        self.finished = False
        self.catching_up = True

    def window(self, now: float) -> tuple[float, float]:
        lo = max(self.done_until, self.watermark - self.overlap)
        hi = now if self.end is None else min(self.end, now)
        next_midnight = (math.floor(lo / 86400) + 1) * 86400
        if next_midnight <= now - self.overlap:  # catching up: one query per whole day
            hi = min(hi, next_midnight)
        return lo, hi

    def poll(self, now: Optional[float] = None) -> list[Event]:
        """One query; the rows not returned before, in event-time order."""
        now = time.time() if now is None else now
        lo, hi = self.window(now)
        if hi <= lo:
            self.catching_up = False
            self.finished = self.end is not None and lo >= self.end
            return []
        params = [*time_range(lo, hi), *self.params]
        result = self.session.run(self.sql, params, "poll")
        events, keep = self._new_rows(result.table)
        if self.exporter is not None and events:
            import pyarrow as pa

            self.exporter.write(result.table.filter(pa.array(keep, type=pa.bool_())))
        final = hi == self.end or hi <= now - self.overlap
        if final:
            self.done_until = hi
            self.watermark = max(self.watermark, hi)
        else:  # loads are assumed at most `overlap` late: never re-read further back (a quiet watermark would
            self.done_until = max(self.done_until, hi - self.overlap)  # otherwise stretch polls over several days)
        self.catching_up = final and (self.end is None or hi < self.end) and hi < now
        self.finished = self.end is not None and hi >= self.end
        cutoff = max(self.done_until, self.watermark - self.overlap)
        self.seen = {d: v for d, v in self.seen.items() if v[1] >= cutoff}
        ROWS_NEW.inc(len(events))
        log.info(
            "bigquery poll",
            lo=format_bigquery_ts(lo),
            hi=format_bigquery_ts(hi),
            read=result.table.num_rows,
            new=len(events),
            watermark=format_bigquery_ts(self.watermark),
        )
        return events

    def _new_rows(self, table) -> tuple[list[Event], list[bool]]:
        """Multiset difference against what was already returned: a row read again in the overlap is dropped, a
        second identical download is kept."""
        micros, text, others = table_columns(table)
        counts: Counter = Counter()
        latest: dict[bytes, float] = {}
        events: list[Event] = []
        keep: list[bool] = []
        seen, dumps, blake2b = self.seen, orjson.dumps, hashlib.blake2b
        for us, ts, values in zip(micros, text, zip(*others)):
            if us is None:
                keep.append(False)
                continue
            value = dumps(event_dict(ts, *values))
            digest = blake2b(value, digest_size=16).digest()
            n = counts[digest] = counts[digest] + 1
            epoch = us / 1e6
            latest[digest] = epoch
            prev = seen.get(digest)
            if prev is not None and n <= prev[0]:
                keep.append(False)
                continue
            keep.append(True)
            self._seq += 1
            project = values[1]
            events.append(Event(epoch, self._seq, value, project.encode() if project else b""))
        if events:
            self.watermark = max(self.watermark, max(e.epoch for e in events))
        for digest, n in counts.items():
            prev = seen.get(digest)
            seen[digest] = (max(n, prev[0] if prev else 0), latest[digest])
        events.sort()
        return events, keep


class ParquetExport:
    """Appends what was read to one Parquet file, flat columns that `--source file:PATH` replays."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.writer: Optional[pq.ParquetWriter] = None
        self.rows = 0

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.writer = pq.ParquetWriter(str(self.path), table.schema)
            except OSError as exc:
                raise UserError(f"cannot write --export {self.path}: {exc}") from None
        self.writer.write_table(table.cast(self.writer.schema))
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def merge_pending(pending: list[Event], new: Iterable[Event]) -> None:
    """Keep the not-yet-sent events as a heap in event-time order (late loads slot in where they belong)."""
    for e in new:
        heapq.heappush(pending, e)


def daily_aggregates(settings: Settings, day: dt.date) -> Iterator[tuple[str, str, Optional[str], int]]:
    """(project, dimension, category, downloads) for one UTC day: what the dataflow's daily rollups hold."""
    session = session_for(settings)
    sql, params = aggregates_query(settings)
    lo = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    params = [*time_range(lo, lo + 86400), *params]
    table = session.run(sql, params, "aggregate").table
    cols = [table.column(c).to_pylist() for c in ("project", "dimension", "category", "downloads")]
    for project, dimension, category, n in zip(*cols):
        yield project, dimension, category, int(n)
