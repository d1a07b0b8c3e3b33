"""Event-time windows that stay exact however unevenly partitions are read.

The watermark is the minimum, over partitions that still have data to give, of the newest second each has
delivered; a caught-up partition that stays silent for `idle_s` stops holding it back. A 1-second window gets its
early result once the watermark passes its end (plus `out_of_order_s`), and is emitted again whenever late events
for it arrive. Window state is kept until the lateness horizon passes, rounded to whole minutes: from then on its
minute of rollups is sealed and any further event for it is dropped and counted. Sealed minutes leave in aligned
10-minute blocks (`BLOCK_S`), which the shard merges and writes off its worker, each exactly once (dataflow/blocks.py).
"""

from __future__ import annotations

import functools
import heapq
import math
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from pypi_pulse.dataflow.partials import BUCKET_S, BatchPartial, day_of
from pypi_pulse.dataflow.rollups import BlockRows, MinuteRollup, pack_bytes, unpack_bytes
from pypi_pulse.dataflow.spill import SpillStore
from pypi_pulse.metrics.reasons import reason_label
from pypi_pulse.sink.model import PipelineStats, WindowRow

TOP_N = 10


BLOCK_S = 600  # rollups leave the clock in aligned 10-minute blocks: fewer, larger sink writes, merged in C
BATCH_HOLD_EVENTS = 5_000_000  # a batch run's sealed blocks of one day wait for each other up to this many events


@dataclass
class SealedBlock:
    """A sealed block's minutes. They are merged into the block's rows where the block is written, off the worker
    (dataflow/blocks.py): merging a 10-minute block at PyPI's volume takes seconds."""

    bucket: int
    span: int
    minutes: list[MinuteRollup]

    @functools.cached_property
    def counts(self) -> BlockRows:
        return MinuteRollup.merged_final(self.minutes, day_of(self.bucket))


@dataclass
class Flush:
    """What one emission hands on: the shard writes its sealed blocks itself; windows and counters go to the merge."""

    windows: list[WindowRow]
    sealed: list[SealedBlock]
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
    """One second's counts. Once emitted, its per-project counts are kept packed (pickled bytes) until a late
    event unpacks them: the lateness horizon holds hundreds of closed windows, and Bytewax snapshots the whole
    clock every epoch, recovery or not; packed, they cost a fraction of the memory and a memcpy to snapshot."""

    countries: Counter = field(default_factory=Counter)
    projects: Optional[Counter] = field(default_factory=Counter)
    packed: Optional[bytes] = None

    def counts(self) -> Counter:
        if self.projects is None:
            assert self.packed is not None  # packed when its counts are not held
            self.projects = unpack_bytes(self.packed)
            self.packed = None
        return self.projects

    def pack(self, compress: bool = True) -> None:
        if self.projects is not None:
            self.packed = pack_bytes(self.projects, compress)
            self.projects = None

    def row(self, start: int) -> WindowRow:
        projects = self.counts()
        top = heapq.nsmallest(TOP_N, projects.items(), key=lambda kv: (-kv[1], kv[0]))
        return WindowRow(start, sum(self.countries.values()), len(projects), dict(self.countries), top)


class Clock:
    """All of the dataflow's state: pickled whole for Bytewax recovery."""

    def __init__(
        self,
        lateness_s: float,
        out_of_order_s: float,
        idle_s: float,
        emit_every_s: float = 0.2,
        log_open_minutes: bool = False,
        hold_blocks_events: int = 0,
    ):
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
        self.dirty_minutes: set[int] = set()  # rollup minutes changed since they were last packed
        self.sealed_before = -math.inf  # every second before this is final; its events are dropped
        self.watermark = -math.inf
        self.counters: Counter = Counter()
        self.last_emit = 0.0
        self.block_s = BLOCK_S
        self.log_open_minutes = log_open_minutes  # snapshots (recovery) on: see MinuteRollup
        # A sealed block's minutes stay (packed, with recovery) until its shard has written the block's file
        # (`release`, dataflow/blocks.py): until then `blocks_before` stays below it, and with recovery a crash
        # between the seal and the file cannot lose it. A restored clock sends its unapplied blocks again; the sink
        # skips what the history already has.
        self.unapplied: dict[int, list[MinuteRollup]] = {}
        self.resend: set[int] = set()
        # Batch runs without recovery (`hold_blocks_events` > 0): a day's sealed blocks wait for each other and
        # leave as one bucket (`_held_back`), so each of the day's rows is written once, at the end of the day, of
        # the input, or once they hold this many events (which bounds the memory they take).
        self.hold_blocks_events = hold_blocks_events
        self.minute_events: Counter = Counter()  # events counted per rollup minute, while blocks are held

    # ---- input --------------------------------------------------------------------------------------------
    def add(self, p: BatchPartial) -> None:
        self.n_partitions = max(self.n_partitions, p.n_partitions)
        part = self.parts.get(p.partition)
        if part is None:  # silent since now: a partition that never had data holds the watermark idle_s, not 0 s
            part = self.parts[p.partition] = Part(last_data_wall=p.wall)
        part.next_offset = p.next_offset
        part.caught_up = p.caught_up
        part.final = part.final or p.final
        c = self.counters
        c["consumed"] += p.consumed
        if p.unknown_countries:
            c["country_unknown"] += p.unknown_countries
        if p.dead:
            c["dead_lettered"] += len(p.dead)
            for _, reason in p.dead:
                c["dead_lettered." + reason_label(reason)] += 1
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
                windows[sec].counts().update(projects.counts())  # distinct projects counted by numpy
        for minute, cols in p.minutes.items():
            if minute >= sealed:
                r = self.rollups.get(minute)
                if r is None:
                    r = self.rollups[minute] = MinuteRollup(self.log_open_minutes)
                r.add(cols)
                if self.hold_blocks_events:
                    self.minute_events[minute] += len(cols.all_projects)
        self.dirty_minutes.update(m for m in p.minutes if m >= sealed)

    # ---- time ---------------------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        parts = self.parts.values()
        if len(self.parts) < self.n_partitions:
            return  # wait until every partition has spoken at least once
        seen = [p.max_second for p in parts if p.max_second is not None]
        if not seen:
            return
        active = [
            p.max_second for p in parts if not p.final and not (p.caught_up and now - p.last_data_wall >= self.idle_s)
        ]
        if any(m is None for m in active):
            return  # a partition with data still to give has not delivered any yet
        # all caught up and silent: everything seen so far is complete as far as anyone can tell
        marks = [m for m in active if m is not None]
        candidate: float = min(marks) if marks else max(seen) + 1 + self.out_of_order_s
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
        for s in out_secs:
            self.windows[s].pack(compress=self.log_open_minutes)
        completed = [m for m in self.dirty_minutes if m + BUCKET_S <= closing]
        for minute in completed:
            self.dirty_minutes.discard(minute)  # complete unless late events come: packed until they do
            if minute in self.rollups:
                self.rollups[minute].pack()
        sealed: list[SealedBlock] = []
        horizon = wm - self.lateness_s
        seal_before = horizon - horizon % BUCKET_S if math.isfinite(horizon) else horizon
        if seal_before > self.sealed_before:
            for sec in [s for s in self.windows if s < seal_before]:
                del self.windows[sec]
                self.emitted.discard(sec)
            self.sealed_before = seal_before
            # a block leaves once all its minutes are sealed, always whole: the same block, with the same minutes,
            # whatever batches a replay after recovery brings, so the sink can apply it exactly once
            block_s = self.block_s
            ready = sorted({m - m % block_s for m in self.rollups if m - m % block_s + block_s <= seal_before})
            whole_days = not math.isfinite(seal_before)
            if self.hold_blocks_events and not whole_days:
                ready, whole_days = self._held_back(ready, seal_before), True
            for block, span in self._buckets_of(ready, whole_days=whole_days):
                minutes = [self.rollups.pop(m) for m in sorted(self.rollups) if block <= m < block + span]
                if self.log_open_minutes:
                    for m in minutes:
                        m.pack()
                self.unapplied[block] = minutes
                sealed.append(SealedBlock(block, span, minutes))
        for block in sorted(self.resend & self.unapplied.keys()):  # recovery only: every block spans `block_s`
            sealed.append(SealedBlock(block, self.block_s, self.unapplied[block]))
        self.resend.clear()
        self.last_emit = now
        # the merge of shards (dataflow/merge.py) closes a second once every shard's watermark has passed it: a
        # shard with no window to emit still reports each new closed second
        closed = math.floor(closing) if math.isfinite(closing) else closing
        if not rows and not sealed and not force and now - self._last_stats < 1.0 and closed == self._last_closed:
            return None
        self._last_stats, self._last_closed = now, closed
        return Flush(rows, sealed, self.stats(now))

    _last_stats = 0.0
    _last_closed = -math.inf

    def _buckets_of(self, blocks: list[int], whole_days: bool) -> list[tuple[int, int]]:
        """(start, span) of the buckets the sealed `blocks` leave in: one per block, the same whatever a replay
        after recovery brings; at the end of a batch run without recovery, nothing is replayed, and a day's
        remaining blocks leave as one bucket (one merge, and one file)."""
        if not whole_days or self.log_open_minutes:
            return [(b, self.block_s) for b in blocks]
        out: list[tuple[int, int]] = []
        for b in blocks:
            if out and day_of(out[-1][0]) == day_of(b):
                out[-1] = (out[-1][0], b + self.block_s - out[-1][0])
            else:
                out.append((b, self.block_s))
        return out

    def _held_back(self, ready: list[int], seal_before: float) -> list[int]:
        """The sealed blocks that leave now in a batch run: those of days that are over, or all of them once they
        hold `hold_blocks_events` events (a block sealed a moment before the end of input would leave alone)."""
        block_s = self.block_s
        held = sum(n for m, n in self.minute_events.items() if m - m % block_s in ready)
        if held >= self.hold_blocks_events:
            leaving = ready
        else:
            leaving = [b for b in ready if b - b % 86400 + 86400 <= seal_before]
        for m in [m for m in self.minute_events if m - m % block_s in leaving]:
            del self.minute_events[m]
        return leaving

    def stats(self, now: float) -> PipelineStats:
        done = min(self.unapplied, default=self.sealed_before)  # a block not yet written has not left
        return PipelineStats(
            dict(self.counters),
            {p: part.next_offset for p, part in self.parts.items()},
            self.watermark if math.isfinite(self.watermark) else None,
            now,
            done if done > -math.inf else None,
        )

    def release(self, applied: set[int]) -> None:
        """Forget the sealed blocks their shard has written."""
        for block in applied:
            self.unapplied.pop(block, None)

    # ---- recovery -----------------------------------------------------------------------------------------
    def snapshot(self, spill: Optional[SpillStore] = None) -> bytes:
        """With a `spill` store (live runs with recovery), packed state goes to its files once and the snapshot
        refers to it (dataflow/spill.py)."""
        return spill.dumps(self) if spill is not None else pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(data: bytes, spill: Optional[SpillStore] = None) -> Clock:
        clock = spill.loads(data) if spill is not None else pickle.loads(data)
        clock.resend = set(clock.unapplied)  # the sink may not have them all: send them again
        # What the snapshot says about each partition's reading is stale: while the dataflow was down, a partition
        # caught up then may have gained a backlog. Taken as caught up and silent since before the crash, every
        # partition but the first to deliver counted as idle, the watermark followed that one partition's backlog,
        # and the others' backlogs were dropped as too late. Each partition holds the watermark again until it has
        # been read up to its end and then been silent for `idle_s`, as at the start of a run.
        now = time.time()
        for part in clock.parts.values():
            part.caught_up = False
            part.last_data_wall = now
            part.final = False  # a drained run's partitions are read again: new events may come
        if not math.isfinite(clock.sealed_before) and clock.sealed_before > 0:
            clock._reopen_after_drain()
        return clock

    def _reopen_after_drain(self) -> None:
        """A drained run ended with its watermark and horizon at infinity (every partition final), all emitted
        and sealed: reopened after its newest second, with the horizon at the end of that second's block, so that
        an event of a block already written is dropped and counted, never added to a block the history holds."""
        seen = [p.max_second for p in self.parts.values() if p.max_second is not None]
        newest = max(seen) if seen else 0
        self.watermark = newest + 1
        self.sealed_before = newest - newest % self.block_s + self.block_s
