"""The per-second merge of the shards' partial windows: one stateful step (key "all") that sees only small
partials, never events.

Each shard's clock emits, for its own projects, a window row per second (downloads, distinct projects, countries,
its top 10) once its watermark passes the second, and again when late events change it. A project lives in one
shard only, so summing the shards' downloads, distinct counts and countries, and taking the top 10 of their top 10s,
is the exact window. A second is emitted once every shard's reported watermark has passed it (each shard then has
emitted its part of it, if it had one); a shard's later version of an emitted second emits the merged second again.
Counters are summed over the shards' latest figures (the batch's own, consumed and dead-lettered, ride with shard 0
only), but for `late`, which only the merge can tell; the watermark and each partition's offset are the lowest any shard reports.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from bytewax.operators import StatefulLogic

from pypi_pulse.dataflow.clock import TOP_N, Flush
from pypi_pulse.sink.model import PipelineStats, WindowRow


def merged_row(start: int, parts: list[WindowRow]) -> WindowRow:
    countries: Counter = Counter()
    for p in parts:
        countries.update(p.countries)
    top = heapq.nsmallest(TOP_N, (t for p in parts for t in p.top), key=lambda kv: (-kv[1], kv[0]))
    return WindowRow(
        start, sum(p.downloads for p in parts), sum(p.unique_packages for p in parts), dict(countries), list(top)
    )


@dataclass
class Merge:
    shards: int
    out_of_order_s: float
    lateness_s: float
    stats: dict[int, PipelineStats] = field(default_factory=dict)  # each shard's latest
    parts: dict[int, dict[int, WindowRow]] = field(default_factory=dict)  # second -> shard -> its part
    emitted: set[int] = field(default_factory=set)
    dirty: set[int] = field(default_factory=set)
    stats_sent: float = 0.0  # monotonic time the counters last went out without a window
    late: int = 0  # events that changed a window after it was emitted (a shard cannot tell: see `add`)

    def add(self, shard: int, flush: Flush) -> None:
        self.stats[shard] = flush.stats
        for row in flush.windows:
            parts = self.parts.setdefault(row.start, {})
            if row.start in self.emitted:
                # late: the shard's new events of a second already emitted. Its own `late` counts only updates of
                # windows it had emitted itself; a shard's first events of a second other shards closed are late too
                before = parts.get(shard)
                self.late += row.downloads - (before.downloads if before is not None else 0)
                self.dirty.add(row.start)
            parts[shard] = row

    def closing(self) -> float:
        """Every second before this is closed in every shard."""
        if len(self.stats) < self.shards or any(s.watermark is None for s in self.stats.values()):
            return -math.inf
        return min(s.watermark for s in self.stats.values() if s.watermark is not None) - self.out_of_order_s

    def flush(self, force: bool = False) -> Optional[Flush]:
        closing = math.inf if force else self.closing()
        ready = {s for s in self.parts if s + 1 <= closing and s not in self.emitted} | self.dirty
        self.dirty = set()
        rows = [merged_row(s, list(self.parts[s].values())) for s in sorted(ready)]
        self.emitted |= ready
        if math.isfinite(closing):  # a shard drops events older than its lateness horizon: no part changes there
            forget = closing - self.lateness_s - 120
            for s in [s for s in self.parts if s < forget]:
                del self.parts[s]
                self.emitted.discard(s)
        if not self.stats or not (rows or force or time.monotonic() - self.stats_sent >= 1.0):
            return None
        self.stats_sent = time.monotonic()
        return Flush(rows, [], self.merged_stats())

    def merged_stats(self) -> PipelineStats:
        counters: Counter = Counter()
        offsets: dict[int, int] = {}
        for st in self.stats.values():
            counters.update(st.counters)
            for p, o in st.offsets.items():
                offsets[p] = min(o, offsets.get(p, o))
        counters["late"] = self.late
        marks = [s.watermark for s in self.stats.values()]
        watermark = None if len(marks) < self.shards or None in marks else min(m for m in marks if m is not None)
        updated = max((s.updated_at or 0.0) for s in self.stats.values())
        done = [s.blocks_before for s in self.stats.values()]
        blocks_before = None if len(done) < self.shards or None in done else min(d for d in done if d is not None)
        return PipelineStats(dict(counters), offsets, watermark, updated, blocks_before)


class MergeLogic(StatefulLogic[tuple[int, Flush], Flush, Merge]):
    def __init__(self, merge: Merge):
        self.merge = merge

    def on_item(self, value: tuple[int, Flush]):
        shard, flush = value
        self.merge.add(shard, flush)
        out = self.merge.flush()
        return ([out] if out else []), StatefulLogic.RETAIN

    def on_eof(self):
        out = self.merge.flush(force=True)  # the last counters too, even with no window left to emit
        return ([out] if out else []), StatefulLogic.RETAIN

    def snapshot(self) -> Merge:
        return self.merge
