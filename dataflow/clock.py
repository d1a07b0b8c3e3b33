"""Event-time windows that stay exact however unevenly partitions are read.

The watermark is the minimum, over partitions that still have data to give, of the newest second each has
delivered; a caught-up partition that stays silent for `idle_s` stops holding it back. A 1-second window gets its
early result once the watermark passes its end (plus `out_of_order_s`), and is emitted again whenever late events
for it arrive. Window state is kept until the lateness horizon passes, rounded to whole minutes: from then on its
minute of rollups is sealed and any further event for it is dropped and counted. Sealed minutes leave for the sink
in aligned 10-minute blocks (`BLOCK_S`), summed in C, each applied exactly once by the sink.
"""

from __future__ import annotations

import ctypes
import heapq
import math
import pickle
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Optional

from pypi_pulse.dataflow.parse import BUCKET_S, FILE_DIMS, VIEW_DIMS, BatchPartial, MinuteColumns, day_of
from pypi_pulse.metrics.reasons import reason_label
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow
from pypi_pulse.sink.rollup import merge_counts

TOP_N = 10


def _return_freed_memory() -> None:
    """Hand the heap freed by a minute's counters (hundreds of MB at 20,000 events/s) back to the system: glibc
    keeps freed blocks of large dicts otherwise, and the process's RSS only ever grows. A no-op off glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim  # noqa: B018 - only glibc has it
except (OSError, AttributeError):
    _LIBC = None


def _pack_bytes(obj, compress: bool = True) -> bytes:
    """Closed state, pickled and compressed (zlib level 1: about 3x smaller at ~90 MB/s): it is held for the whole
    lateness horizon and copied into every recovery snapshot, so its size is memory and snapshot time. Without
    snapshots (batch runs) it is only pickled: compressing cost a batch run about 14% of its speed."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return zlib.compress(data, 1) if compress else data


def _unpack_bytes(data: bytes):
    # a zlib stream starts with 0x78; state packed before compression (a pickle, 0x80) is still read
    return pickle.loads(zlib.decompress(data) if data[:1] == b"\x78" else data)
BLOCK_S = 600  # rollups leave the clock in aligned 10-minute blocks: fewer, larger sink writes, merged in C



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
    """One second's counts. Once emitted, its per-project counts are kept packed (pickled bytes) until a late
    event unpacks them: the lateness horizon holds hundreds of closed windows, and Bytewax snapshots the whole
    clock every epoch, recovery or not; packed, they cost a fraction of the memory and a memcpy to snapshot."""

    countries: Counter = field(default_factory=Counter)
    projects: Optional[Counter] = field(default_factory=Counter)
    packed: Optional[bytes] = None

    def counts(self) -> Counter:
        if self.projects is None:
            self.projects = _unpack_bytes(self.packed)
            self.packed = None
        return self.projects

    def pack(self, compress: bool = True) -> None:
        if self.projects is not None:
            self.packed = _pack_bytes(self.projects, compress)
            self.projects = None

    def row(self, start: int) -> WindowRow:
        projects = self.counts()
        top = heapq.nsmallest(TOP_N, projects.items(), key=lambda kv: (-kv[1], kv[0]))
        return WindowRow(start, sum(self.countries.values()), len(projects), dict(self.countries), top)


class Clock:
    """All of the dataflow's state: pickled whole for Bytewax recovery."""

    def __init__(self, lateness_s: float, out_of_order_s: float, idle_s: float, emit_every_s: float = 0.2,
                 log_open_minutes: bool = False):
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
                windows[sec].counts().update(projects)  # counted in C
        for minute, cols in p.minutes.items():
            if minute >= sealed:
                r = self.rollups.get(minute)
                if r is None:
                    r = self.rollups[minute] = MinuteRollup(self.log_open_minutes)
                r.add(cols)
        self.dirty_minutes.update(m for m in p.minutes if m >= sealed)

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
        for s in out_secs:
            self.windows[s].pack(compress=self.log_open_minutes)
        completed = [m for m in self.dirty_minutes if m + BUCKET_S <= closing]
        for minute in completed:
            self.dirty_minutes.discard(minute)  # complete unless late events come: packed until they do
            if minute in self.rollups:
                self.rollups[minute].pack()
        if completed:
            _return_freed_memory()
        buckets = []
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
            for block in ready:
                minutes = [self.rollups.pop(m) for m in sorted(self.rollups) if block <= m < block + block_s]
                buckets.append(RollupBucket(block, MinuteRollup.merged_final(minutes, day_of(block)), span=block_s))
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
        clock = pickle.loads(data)
        if not hasattr(clock, "dirty_minutes"):  # a snapshot taken before rollup minutes were packed
            clock.dirty_minutes = set(clock.rollups)
        if not hasattr(clock, "block_s"):  # taken while minutes were sealed one by one: keep doing so
            clock.block_s = BUCKET_S
        if not hasattr(clock, "log_open_minutes"):  # it was snapshotted, so it runs with recovery
            clock.log_open_minutes = True
        return clock


class MinuteRollup:
    """One minute's rollup state: per dimension, (project, category) -> downloads, counted in C (`Counter.update`
    over `zip`) as batches arrive, and turned into (day, project, dimension, category) rows by C-level `zip`s once,
    when the minute is sealed. Measured faster than counting distinct (project, record) pairs and expanding them
    in Python at seal time, at both sparse (400 events/s) and dense (3,300 events/s) traffic.

    A complete minute (its windows all closed) is packed into compressed bytes until it is sealed or a late event
    unpacks it, for the same reasons as `Window`. The minute still being counted is snapshotted as a *log* of the
    columns it was counted from: each snapshot pickles only the columns added since the previous one (reusing the
    bytes of earlier ones), and a restore counts them again. Pickling the counters instead cost most of a second
    per epoch at 20,000 events/s (the whole minute, every epoch), and pickling them in chunks cost several seconds
    a minute to sum the chunks back (measured with py-spy on `benchmarks/latency.py --recovery`). The log is kept
    only when the clock is snapshotted (`Clock(log_open_minutes=True)`, i.e. with recovery)."""

    __slots__ = ("per_project", "per_category", "packed", "log", "pending", "base")

    def __init__(self, logged: bool = False):
        self.per_project = {"with_mirrors": Counter(), "overall": Counter()}  # project -> n
        self.per_category = {dim: Counter() for dim in ("country", *VIEW_DIMS, *FILE_DIMS)}  # (project, cat) -> n
        self.packed: Optional[bytes] = None
        self.log: Optional[list[bytes]] = [] if logged else None  # pickled columns already in a snapshot
        self.pending: list = []  # columns counted since the last snapshot
        self.base: Optional[bytes] = None  # packed counts a late event reopened; the log adds to them

    def pack(self) -> None:
        if self.packed is None:
            self.packed = _pack_bytes((self.per_project, self.per_category), compress=self.log is not None)
            self.per_project = self.per_category = None
            if self.log is not None:
                self.log, self.pending, self.base = [], [], None  # the packed bytes stand for all of it now

    def _unpack(self) -> None:
        if self.packed is not None:
            self.per_project, self.per_category = _unpack_bytes(self.packed)
            if self.log is not None:
                self.base = self.packed
            self.packed = None

    def add(self, cols: MinuteColumns) -> None:
        self._unpack()
        if self.log is not None:
            self.pending.append(cols)
        self._count(cols)

    def _count(self, cols: MinuteColumns) -> None:
        self.per_project["with_mirrors"].update(cols.all_projects)
        self.per_project["overall"].update(cols.projects)
        pc = self.per_category
        pc["country"].update(zip(cols.projects, cols.countries))
        for j, dim in enumerate(VIEW_DIMS):
            pc[dim].update(zip(cols.projects, map(itemgetter(j), cols.views)))
        pc["file_type"].update(zip(cols.projects, cols.file_types))
        pc["version"].update(zip(cols.projects, cols.versions))

    def final(self, day: str) -> dict:
        """(day, project, dimension, category) -> downloads, derived dimensions included."""
        return MinuteRollup.merged_final([self], day)

    @staticmethod
    def merged_final(minutes: list["MinuteRollup"], day: str) -> dict:
        """`final` of several minutes of one day, summed per dimension before any row is built (the keys are
        short there, and repeat from minute to minute)."""
        for m in minutes:
            m._unpack()
        out: dict = {}
        days = repeat(day)
        for dim in minutes[0].per_project:
            c = merge_counts([m.per_project[dim] for m in minutes])
            out.update(zip(zip(days, c.keys(), repeat(dim), repeat(None)), c.values()))
        for dim in minutes[0].per_category:
            c = merge_counts([m.per_category[dim] for m in minutes])
            keys = c.keys()
            out.update(zip(zip(days, map(_FIRST, keys), repeat(dim), map(_SECOND, keys)), c.values()))
        return out

    def __getstate__(self):
        if self.packed is not None:
            return self.packed
        if self.log is None:  # not logged (no recovery): the counters themselves
            return (self.per_project, self.per_category)
        if self.pending:
            self.log.append(pickle.dumps(self.pending, protocol=pickle.HIGHEST_PROTOCOL))
            self.pending = []
        return ("log", self.log, self.base)

    def __setstate__(self, state):
        self.pending, self.log, self.base = [], None, None
        if isinstance(state, bytes):
            self.per_project = self.per_category = None
            self.packed = state
        elif state[0] == "log":
            _, log, base = state
            self.__init__(logged=True)
            if base is not None:  # counted before: the packed state a late event reopened
                self.per_project, self.per_category = _unpack_bytes(base)
                self.base = base
            for blob in log:
                for cols in pickle.loads(blob):
                    self._count(cols)
            self.log = list(log)
        else:  # a snapshot of the counters themselves (no log, or taken by an earlier version)
            (self.per_project, self.per_category), self.packed = state, None


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
