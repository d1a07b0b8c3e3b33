"""Partial aggregates: what the per-event work (dataflow/parse.py) hands the event-time clocks.

A batch's events become per-event coded columns (`Columns`); `partial_of` cuts them by second (windows) and by
minute (rollups). `sharded` first splits them by a stable hash of the PEP 503 project name: each project lives in
exactly one shard, so a shard's windows and rollups are exact for its projects, and the per-second merge of the
shards' partial windows (dataflow/merge.py) is exact for all. Every shard's partial carries the batch's reading
progress (partition, offset, newest second), so every shard's clock sees the same watermark.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from pypi_pulse.dataflow.columns import Coded
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.rules import VIEW_DIMS, is_mirror

BUCKET_S = 60  # rollups are sealed per minute of event time
_INSTALLER = VIEW_DIMS.index("installer")  # a view's installer says whether it is a mirror's


class MinuteColumns(NamedTuple):
    """One rollup minute of a batch, as parallel per-event coded columns."""

    all_projects: Coded  # every event, mirrors included (`with_mirrors`)
    projects: Coded  # the rest: mirror downloads are left out of every other dimension (same table)
    countries: Coded
    views: Coded  # (installer, python_minor, python_major, system, cpu, ci) per event
    file_types: Coded
    versions: Coded


@dataclass
class BatchPartial:
    partition: int
    n_partitions: int
    next_offset: int
    caught_up: bool
    final: bool
    wall: float
    consumed: int
    max_second: Optional[int]
    country_counts: Counter  # (second, country) -> n
    second_projects: dict  # second -> Coded (normalised) project of each event
    minutes: dict  # minute -> MinuteColumns
    dead: list = field(default_factory=list)  # (original bytes, reason)
    unknown_countries: int = 0  # events whose null, empty or malformed country code was counted as `ZZ`
    shard: int = 0  # the shard of projects it holds (`sharded`)


class Columns(NamedTuple):
    """A parsed batch: one entry per counted event in each column, plus what was dead-lettered."""

    raw: RawBatch
    secs: object  # sequence of event seconds
    projects: Coded
    countries: Coded
    views: Coded
    file_types: Coded
    versions: Coded
    dead: list
    unknown_countries: int = 0


_day_cache: dict[int, str] = {}


def day_of(second: int) -> str:
    d = second // 86400
    s = _day_cache.get(d)
    if s is None:
        import datetime as _dt

        s = _day_cache[d] = (_dt.date(1970, 1, 1) + _dt.timedelta(days=d)).isoformat()
    return s


def shard_of(project: str, shards: int) -> int:
    """The shard of a PEP 503 name: the same in every process and run (CRC-32, not Python's salted hash)."""
    return zlib.crc32(project.encode()) % shards


def sharded(cols: Columns, shards: int) -> list[BatchPartial]:
    """One partial per shard, in shard order. Each shard's events count as consumed by it, so that every shard's
    counters add up on their own (consumed = counted + dropped + dead-lettered) and so do their sums at any moment;
    the batch's own figures (dead letters, unknown countries) go with shard 0; its newest second with all."""
    secs = np.asarray(cols.secs, dtype=np.int64)
    newest = int(secs.max()) if len(secs) else None
    if shards == 1:
        return [partial_of(cols)]
    table = np.fromiter((shard_of(p, shards) for p in cols.projects.table), np.int64, len(cols.projects.table))
    of_event = table[cols.projects.codes] if len(secs) else np.zeros(0, np.int64)
    out = []
    for k in range(shards):
        rows = np.flatnonzero(of_event == k)
        first = k == 0
        part = Columns(
            cols.raw,
            secs[rows],
            cols.projects.compact(rows),
            cols.countries.compact(rows),
            cols.views.compact(rows),
            cols.file_types.compact(rows),
            cols.versions.compact(rows),
            cols.dead if first else [],
            cols.unknown_countries if first else 0,
        )
        consumed = len(rows) + (cols.raw.n_events - len(secs) if first else 0)  # the dead letters with shard 0
        out.append(partial_of(part, consumed=consumed, max_second=newest, shard=k))
    return out


def partial_of(
    cols: Columns, consumed: Optional[int] = None, max_second: Optional[int] = None, shard: int = 0
) -> BatchPartial:
    """Split the columns by second (windows) and by minute (rollups); sorted by second first unless (as usual)
    they already are. `consumed` and `max_second` default to the batch's own."""
    raw = cols.raw
    projects, ccs, views, ftypes, versions = cols.projects, cols.countries, cols.views, cols.file_types, cols.versions
    country_counts: Counter = Counter()
    second_projects: dict = {}
    minutes: dict = {}
    secs = np.asarray(cols.secs, dtype=np.int64)
    if len(secs):
        steps = np.diff(secs)
        if (steps < 0).any():
            order = np.argsort(secs, kind="stable")
            secs = secs[order]
            projects, ccs, views, ftypes, versions = (c.take(order) for c in (projects, ccs, views, ftypes, versions))
            steps = np.diff(secs)
        bounds = [0, *(np.flatnonzero(steps) + 1).tolist(), len(secs)]
        distinct = secs[bounds[:-1]].tolist()
        for s, lo, hi in zip(distinct, bounds, bounds[1:]):
            second_projects[s] = projects.take(slice(lo, hi))
            country_counts.update({(s, cc): n for cc, n in ccs.take(slice(lo, hi)).counts().items()})
        minute_starts = [i for i, s in enumerate(distinct) if i == 0 or s // BUCKET_S != distinct[i - 1] // BUCKET_S]
        minute_starts.append(len(distinct))
        for a, b in zip(minute_starts, minute_starts[1:]):
            rows = slice(bounds[a], bounds[b])
            minute = distinct[a] - distinct[a] % BUCKET_S
            minutes[minute] = _minute_columns(*(c.take(rows) for c in (projects, ccs, views, ftypes, versions)))
    if max_second is None and len(secs):
        max_second = int(secs[-1])
    return BatchPartial(
        raw.partition,
        raw.n_partitions,
        raw.next_offset,
        raw.caught_up,
        raw.final,
        raw.wall,
        raw.n_events if consumed is None else consumed,
        max_second,
        country_counts,
        second_projects,
        minutes,
        cols.dead,
        cols.unknown_countries,
        shard,
    )


def _minute_columns(projects: Coded, ccs: Coded, views: Coded, ftypes: Coded, versions: Coded) -> MinuteColumns:
    mirror_views = np.fromiter((is_mirror(v[_INSTALLER]) for v in views.table), bool, len(views.table))
    if not mirror_views.any():
        return MinuteColumns(projects, projects, ccs, views, ftypes, versions)
    keep = ~mirror_views[views.codes]
    return MinuteColumns(projects, *(c.take(keep) for c in (projects, ccs, views, ftypes, versions)))
