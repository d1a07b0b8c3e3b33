"""Event-time windows that stay exact however unevenly partitions are read.

The watermark is the minimum, over partitions that still have data to give, of the newest second each has
delivered; a caught-up partition that stays silent for `idle_s` stops holding it back. A 1-second window gets its
early result once the watermark passes its end (plus `out_of_order_s`), and is emitted again whenever late events
for it arrive. Window state is kept until the lateness horizon passes, rounded to whole rollup buckets: from then
on its minute of rollups is sealed (applied once by the sink) and any further event for it is dropped and counted.
"""

from __future__ import annotations

import heapq
import math
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from pypi_pulse.dataflow.parse import BUCKET_S, FILE_DIMS, VIEW_DIMS, BatchPartial, MinuteColumns, day_of
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow

TOP_N = 10


@dataclass
class Flush:
    """What one emission hands the sink; several are merged by the sink writer."""

    windows: list[WindowRow]
    buckets: list[RollupBucket]
    stats: PipelineStats
    dead: int = 0


@dataclass
class Part:
    max_second: Optional[int] = None
    caught_up: bool = False
    last_data_wall: float = 0.0
    next_offset: int = 0
    final: bool = False


@dataclass
class Window:
    countries: Counter = field(default_factory=Counter)
    projects: Counter = field(default_factory=Counter)

    def row(self, start: int) -> WindowRow:
        top = heapq.nsmallest(TOP_N, self.projects.items(), key=lambda kv: (-kv[1], kv[0]))
        return WindowRow(start, sum(self.countries.values()), len(self.projects), dict(self.countries), top)


class Clock:
    """All of the dataflow's state: pickled whole for Bytewax recovery."""

    def __init__(self, lateness_s: float, out_of_order_s: float, idle_s: float, emit_every_s: float = 0.2):
        self.lateness_s = lateness_s
        self.out_of_order_s = out_of_order_s
        self.idle_s = idle_s
        self.emit_every_s = emit_every_s
        self.parts: dict[int, Part] = {}
        self.n_partitions = 0
        self.windows: dict[int, Window] = {}
        self.emitted: set[int] = set()
        self.dirty: set[int] = set()
        self.rollups: dict[int, MinuteRollup] = {}
        self.sealed_before = -math.inf  # every second before this is final; its events are dropped
        self.watermark = -math.inf
        self.counters: Counter = Counter()
        self.last_emit = 0.0

    # ---- input --------------------------------------------------------------------------------------------
    def add(self, p: BatchPartial) -> None:
        self.n_partitions = max(self.n_partitions, p.n_partitions)
        part = self.parts.setdefault(p.partition, Part())
        part.next_offset = p.next_offset
        part.caught_up = p.caught_up
        part.final = part.final or p.final
        c = self.counters
        c["consumed"] += p.consumed
        if p.dead:
            c["dead_lettered"] += len(p.dead)
            for _, reason in p.dead:
                c["dead_lettered." + _reason_class(reason)] += 1
        if p.max_second is not None:
            part.last_data_wall = p.wall
            if part.max_second is None or p.max_second > part.max_second:
                part.max_second = p.max_second
        sealed = self.sealed_before
        windows = self.windows
        for (sec, cc), n in p.country_counts.items():
            if sec < sealed:
                c["dropped"] += n
                continue
            w = windows.get(sec)
            if w is None:
                w = windows[sec] = Window()
            w.countries[cc] += n
            c["counted"] += n
            if sec in self.emitted:
                c["late"] += n
                self.dirty.add(sec)
        for sec, projects in p.second_projects.items():
            if sec >= sealed:
                windows[sec].projects.update(projects)  # counted in C
        for minute, cols in p.minutes.items():
            if minute >= sealed:
                r = self.rollups.get(minute)
                if r is None:
                    r = self.rollups[minute] = MinuteRollup()
                r.add(cols)

    # ---- time ---------------------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        parts = self.parts.values()
        if len(self.parts) < self.n_partitions:
            return  # wait until every partition has spoken at least once
        seen = [p.max_second for p in parts if p.max_second is not None]
        if not seen:
            return
        active = [p.max_second for p in parts
                  if not p.final and not (p.caught_up and now - p.last_data_wall >= self.idle_s)]
        if any(m is None for m in active):
            return  # a partition with data still to give has not delivered any yet
        # all caught up and silent: everything seen so far is complete as far as anyone can tell
        candidate = min(active) if active else max(seen) + 1 + self.out_of_order_s
        if all(p.final for p in parts):
            candidate = math.inf
        if candidate > self.watermark:
            self.watermark = candidate

    def flush(self, now: float, force: bool = False) -> Optional[Flush]:
        if not force and now - self.last_emit < self.emit_every_s:
            return None
        self.advance(now)
        wm = self.watermark
        closing = wm - self.out_of_order_s
        out_secs = set(self.dirty)
        self.dirty.clear()
        for sec in self.windows:
            if sec + 1 <= closing and sec not in self.emitted:
                out_secs.add(sec)
                self.emitted.add(sec)
        rows = [self.windows[s].row(s) for s in sorted(out_secs)]
        buckets = []
        horizon = wm - self.lateness_s
        seal_before = horizon - horizon % BUCKET_S if math.isfinite(horizon) else horizon
        if seal_before > self.sealed_before:
            for minute in sorted(m for m in self.rollups if m + BUCKET_S <= seal_before):
                buckets.append(RollupBucket(minute, self.rollups.pop(minute).final(day_of(minute))))
            for sec in [s for s in self.windows if s < seal_before]:
                del self.windows[sec]
                self.emitted.discard(sec)
            self.sealed_before = seal_before
        self.last_emit = now
        if not rows and not buckets and not force and now - self._last_stats < 1.0:
            return None
        self._last_stats = now
        return Flush(rows, buckets, self.stats(now))

    _last_stats = 0.0

    def stats(self, now: float) -> PipelineStats:
        return PipelineStats(
            dict(self.counters),
            {p: part.next_offset for p, part in self.parts.items()},
            self.watermark if math.isfinite(self.watermark) else None,
            now,
        )

    # ---- recovery -----------------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(data: bytes) -> "Clock":
        return pickle.loads(data)


def _reason_class(reason: str) -> str:
    if reason.startswith("invalid event"):
        return "invalid_event"
    if "timestamp" in reason:
        return "bad_timestamp"
    if reason == "missing project":
        return "missing_project"
    return "other"


class MinuteRollup:
    """One minute's rollup state: distinct (project, record view) pairs counted in C as batches arrive, and
    expanded into (day, project, dimension, category) rows once, when the minute is sealed. Far fewer distinct
    pairs than events reach the Python loop in `final`, and none of it is done twice."""

    __slots__ = ("with_mirrors", "countries", "views", "files")

    def __init__(self):
        self.with_mirrors: Counter = Counter()  # project -> n, mirror downloads included
        self.countries: Counter = Counter()  # (project, country) -> n
        self.views: Counter = Counter()  # (project, details view) -> n
        self.files: Counter = Counter()  # (project, file view) -> n

    def add(self, cols: MinuteColumns) -> None:
        self.with_mirrors.update(cols.all_projects)
        self.countries.update(zip(cols.projects, cols.countries))
        self.views.update(zip(cols.projects, cols.views))
        self.files.update(zip(cols.projects, cols.files))

    def final(self, day: str) -> dict:
        """(day, project, dimension, category) -> downloads, derived dimensions included."""
        out: dict = {}
        for project, n in self.with_mirrors.items():
            out[(day, project, "with_mirrors", None)] = n
        for (project, cc), n in self.countries.items():
            out[(day, project, "country", cc)] = n
            k = (day, project, "overall", None)
            out[k] = out.get(k, 0) + n
        get = out.get
        for (project, view), n in self.views.items():
            for dim, cat in zip(VIEW_DIMS, view):
                k = (day, project, dim, cat)
                out[k] = get(k, 0) + n
            minor = view[1]
            k = (day, project, "python_major", None if minor is None else minor.split(".", 1)[0])
            out[k] = get(k, 0) + n
        for (project, fv), n in self.files.items():
            for dim, cat in zip(FILE_DIMS, fv):
                k = (day, project, dim, cat)
                out[k] = get(k, 0) + n
        return out

    def __getstate__(self):
        return (self.with_mirrors, self.countries, self.views, self.files)

    def __setstate__(self, state):
        self.with_mirrors, self.countries, self.views, self.files = state
