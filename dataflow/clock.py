"""Event-time windows that stay exact however unevenly partitions are read.

The watermark is the minimum, over partitions that still have data to give, of the newest second each has
delivered; a caught-up partition that stays silent for `idle_s` stops holding it back. A 1-second window gets its
early result once the watermark passes its end (plus `out_of_order_s`), and is emitted again whenever late events
for it arrive. Window state is kept until the lateness horizon passes, rounded to whole minutes: from then on its
minute of rollups is sealed and any further event for it is dropped and counted. Sealed minutes leave for the sink
in aligned 10-minute blocks (`BLOCK_S`), summed in C, each applied exactly once by the sink.
"""

from __future__ import annotations

import heapq
import math
import pickle
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Optional

import numpy as np
import pyarrow as pa

from pypi_pulse.dataflow.columns import Coded, Codes
from pypi_pulse.dataflow.partials import BUCKET_S, BatchPartial, MinuteColumns, day_of
from pypi_pulse.dataflow.spill import SpillStore
from pypi_pulse.metrics.reasons import reason_label
from pypi_pulse.rules import FILE_DIMS, PER_PROJECT, VIEW_DIMS
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow

TOP_N = 10


def _pack_bytes(obj, compress: bool = True) -> bytes:
    """Closed state, pickled and compressed (zlib level 1: about 3x smaller at ~90 MB/s): it is held for the whole
    lateness horizon and copied into every recovery snapshot, so its size is memory and snapshot time. Without
    snapshots (batch runs) it is only pickled: compressing cost a batch run about 14% of its speed."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return zlib.compress(data, 1) if compress else data


def _unpack_bytes(data: bytes):
    # a zlib stream starts with 0x78; state packed before compression (a pickle, 0x80) is still read
    return pickle.loads(zlib.decompress(data) if data[:1] == b"\x78" else data)


# How late (wall clock) live results may be before the clock's background work (merging sealed blocks) steps back
# to a trickle: windows normally reach the sink 0.3-0.45 s after they end, and a merge step adds up to ~0.5 s. Results more than `HISTORY_LAG_S` late are history being replayed: no one waits for them.
ON_TIME_S = 0.7
HISTORY_LAG_S = 300.0


def on_time_or_history(lag_s: float) -> bool:
    return lag_s <= ON_TIME_S or lag_s >= HISTORY_LAG_S


class TimeShare:
    """Worker time for background work between flushes (the clock merging a sealed block): credit comes back at a share of the wall-clock time not spent on that work, up to a burst, and
    each step spends what it took. Starts with a full burst."""

    def __init__(self, burst_s: float):
        self.burst_s = self.credit_s = burst_s
        self.credited_at = time.monotonic()

    def refill(self, share: float) -> float:
        now = time.monotonic()
        self.credit_s = min(self.burst_s, self.credit_s + (now - self.credited_at) * share)
        self.credited_at = now
        return self.credit_s

    def spend(self, seconds: float) -> None:
        self.credit_s -= seconds
        self.credited_at = time.monotonic()


BLOCK_S = 600  # rollups leave the clock in aligned 10-minute blocks: fewer, larger sink writes, merged in C
BATCH_HOLD_EVENTS = 5_000_000  # a batch run's sealed blocks of one day wait for each other up to this many events


@dataclass
class Flush:
    """What one emission hands the sink; several are merged by the store step."""

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
        # With recovery, a sealed block's minutes stay (packed) until the history is seen to hold the block's file
        # (`release`): a crash between the seal and the file must not lose it. A restored clock sends its unapplied
        # blocks again; the sink skips what the history already has.
        self.unapplied: dict[int, list[MinuteRollup]] = {}
        self.resend: set[int] = set()
        # Sealed blocks being merged a step at a time (`MinuteRollup.merge_steps`), a few milliseconds per flush:
        # merging a 10-minute block at 20,000 events/s in one go held the windows up for 3.6 s. Never snapshotted:
        # with recovery the block's minutes are in `unapplied`, and a restored clock merges and sends them again.
        self.merging: dict[int, tuple[Iterator, int]] = {}  # bucket -> (merge steps, span: `_buckets_of`)
        self.merge_time = TimeShare(self.MERGE_BURST_S)  # not snapshotted either: a monotonic clock is per process
        # Batch runs without recovery (`hold_blocks_events` > 0): a day's sealed blocks wait for each other and
        # leave as one bucket (`_held_back`), so each of the day's rows is written once, at the end of the day, of
        # the input, or once they hold this many events (which bounds the memory they take).
        self.hold_blocks_events = hold_blocks_events
        self.minute_events: Counter = Counter()  # events counted per rollup minute, while blocks are held

    # A merge step (a minute, a dimension, the sort: at most ~0.5 s at 20,000 events/s) runs while there is
    # credit, which comes back at this share of wall-clock time: a 3.6 s merge is spread over some 12 s, and the
    # windows wait for one step at a time, not for the whole merge. While the watermark is behind real time (live),
    # the share drops to a trickle.
    MERGE_SHARE = 0.3
    MERGE_SHARE_BEHIND = 0.05
    MERGE_BURST_S = 0.05

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("merging", None)  # generators do not pickle; see `merging`
        state.pop("merge_time", None)
        return state

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
            whole_days = not math.isfinite(seal_before)
            if self.hold_blocks_events and not whole_days:
                ready, whole_days = self._held_back(ready, seal_before), True
            for block, span in self._buckets_of(ready, whole_days=whole_days):
                minutes = [self.rollups.pop(m) for m in sorted(self.rollups) if block <= m < block + span]
                if self.log_open_minutes:
                    for m in minutes:
                        m.pack()
                    self.unapplied[block] = minutes
                self.merging[block] = (MinuteRollup.merge_steps(minutes, day_of(block)), span)
        buckets += self._merge_some(until_done=force)
        for block in sorted(self.resend & self.unapplied.keys()):
            minutes, day = self.unapplied[block], day_of(block)
            buckets.append(RollupBucket(block, MinuteRollup.merged_final(minutes, day), span=self.block_s))
        self.resend.clear()
        self.last_emit = now
        # the merge of shards (dataflow/merge.py) closes a second once every shard's watermark has passed it: a
        # shard with no window to emit still reports each new closed second
        closed = math.floor(closing) if math.isfinite(closing) else closing
        if not rows and not buckets and not force and now - self._last_stats < 1.0 and closed == self._last_closed:
            return None
        self._last_stats, self._last_closed = now, closed
        return Flush(rows, buckets, self.stats(now))

    _last_stats = 0.0
    _last_closed = -math.inf

    def _buckets_of(self, blocks: list[int], whole_days: bool) -> list[tuple[int, int]]:
        """(start, span) of the buckets the sealed `blocks` leave in: one per block, so that a block is the same
        whatever a replay after recovery brings. At the end of input without recovery (a batch run) nothing is
        replayed, and a day's remaining blocks leave as one bucket: one merge, and each of the day's rows written
        once instead of once per block (the batch benchmark's export: 373,000 rows instead of 440,000 upserts)."""
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
        hold `hold_blocks_events` events. A 25-minute export's first block was sealed a moment before the end
        of input, in about half of the runs, and its rows were then written twice (470,000 upserts instead of
        373,000, 0.3 s more: `benchmarks/batch_run.py`)."""
        block_s = self.block_s
        held = sum(n for m, n in self.minute_events.items() if m - m % block_s in ready)
        if held >= self.hold_blocks_events:
            leaving = ready
        else:
            leaving = [b for b in ready if b - b % 86400 + 86400 <= seal_before]
        for m in [m for m in self.minute_events if m - m % block_s in leaving]:
            del self.minute_events[m]
        return leaving

    def _merge_credit(self) -> float:
        share = self.MERGE_SHARE if on_time_or_history(time.time() - self.watermark) else self.MERGE_SHARE_BEHIND
        return self.merge_time.refill(share)

    def _merge_some(self, until_done: bool) -> list[RollupBucket]:
        """Advance the blocks being merged while the credit lasts; `until_done` (end of input, forced flushes):
        all the way."""
        done: list[RollupBucket] = []
        if not self.merging:
            return done
        credit = self._merge_credit()
        for block in sorted(self.merging):
            steps, span = self.merging[block]
            while True:
                if credit <= 0 and not until_done:
                    return done
                t = time.perf_counter()
                rows = next(steps)
                took = time.perf_counter() - t
                credit -= took
                self.merge_time.spend(took)
                if rows is not None:
                    break
            del self.merging[block]
            done.append(RollupBucket(block, rows, span=span))
        return done

    def stats(self, now: float) -> PipelineStats:
        done = min(self.merging, default=self.sealed_before)  # a block still being merged has not left yet
        return PipelineStats(
            dict(self.counters),
            {p: part.next_offset for p, part in self.parts.items()},
            self.watermark if math.isfinite(self.watermark) else None,
            now,
            done if done > -math.inf else None,
        )

    def release(self, applied: set[int]) -> None:
        """Forget the sealed blocks the sink has applied."""
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
        clock.merging = {}  # blocks merging at the snapshot are among `unapplied`: sent again below
        clock.merge_time = TimeShare(clock.MERGE_BURST_S)
        if not hasattr(clock, "dirty_minutes"):  # a snapshot taken before rollup minutes were packed
            clock.dirty_minutes = set(clock.rollups)
        if not hasattr(clock, "block_s"):  # taken while minutes were sealed one by one: keep doing so
            clock.block_s = BUCKET_S
        if not hasattr(clock, "log_open_minutes"):  # it was snapshotted, so it runs with recovery
            clock.log_open_minutes = True
        if not hasattr(clock, "unapplied"):  # taken before sealed blocks were kept until applied
            clock.unapplied = {}
        if not hasattr(clock, "hold_blocks_events"):  # taken before batch runs held blocks (they have no recovery)
            clock.hold_blocks_events, clock.minute_events = 0, Counter()
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
        return clock


_EMPTY = np.zeros(0, dtype=np.int64)
_LOW = (1 << 32) - 1
COMPACT_AT = 1 << 16  # raw keys folded into the sorted counts once there are this many (and as many as counts)


class _Tally:
    """Counts of int64 keys: sorted distinct keys with their counts, plus the raw keys of recent batches, folded in
    with one sort once they are numerous. About 16 bytes per distinct key, where a Counter of tuples took ~150."""

    __slots__ = ("keys", "counts", "raw", "n_raw")

    def __init__(self, keys: np.ndarray = _EMPTY, counts: np.ndarray = _EMPTY):
        self.keys, self.counts, self.raw, self.n_raw = keys, counts, [], 0

    def add(self, keys: np.ndarray) -> None:
        self.raw.append(keys)
        self.n_raw += len(keys)
        if self.n_raw >= COMPACT_AT and self.n_raw >= len(self.keys):
            self.compact()

    def compact(self) -> _Tally:
        if self.raw:
            keys, counts = np.unique(np.concatenate(self.raw), return_counts=True)
            self.raw, self.n_raw = [], 0
            self.keys, self.counts = _summed(self.keys, self.counts, keys, counts.astype(np.int64))
        return self

    def __getstate__(self):
        self.compact()
        return (self.keys, self.counts)

    def __setstate__(self, state):
        self.__init__(*state)


def _summed(*pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, counts) pairs, each sorted by key, summed into one: a stable sort of sorted runs is a merge."""
    keys = [k for k in pairs[0::2] if len(k)]
    if len(keys) <= 1:
        return next(((k, c) for k, c in zip(pairs[0::2], pairs[1::2]) if len(k)), (_EMPTY, _EMPTY))
    keys = np.concatenate(pairs[0::2])
    counts = np.concatenate(pairs[1::2])
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(counts, starts)


PER_PROJECT_DIMS = PER_PROJECT
PER_CATEGORY_DIMS = ("country", *VIEW_DIMS, *FILE_DIMS)


class MinuteRollup:
    """One minute's rollup state. Per dimension, a `_Tally` of int64 keys (project code << 32 | category code,
    or the project code alone), codes assigned per minute by `_Codes`; turned into
    (day, project, dimension, category) rows once, when the block holding the minute is sealed.

    Why numbers and not Counters of (project, category) tuples: counting a batch is a handful of C-level dict
    lookups per event plus numpy sorts, not 12 `Counter.update`s over tuples (4.4 against 1.1 µs per event,
    measured in a scratch comparison); the open minute takes ~16 bytes per distinct key instead of ~150, so the
    dataflow's memory stays flat at 20,000 events/s; and a recovery snapshot pickles a few arrays (a memcpy)
    instead of walking millions of dict entries. A complete minute is kept packed (pickled, compressed when the
    clock is snapshotted) until a late event unpacks it, as it is copied into every recovery snapshot."""

    __slots__ = ("projects", "categories", "views", "view_cats", "tallies", "packed", "compress")

    def __init__(self, logged: bool = False):
        self.projects = Codes()
        self.categories = Codes()  # every category string of every dimension (and None)
        self.views = Codes()  # details views (tuples in VIEW_DIMS order)
        self.view_cats = [_EMPTY] * len(VIEW_DIMS)  # per view dimension: view code -> category code
        self.tallies = {dim: _Tally() for dim in (*PER_PROJECT_DIMS, *PER_CATEGORY_DIMS)}
        self.packed: Optional[bytes] = None
        self.compress = logged  # `logged`: the clock is snapshotted (recovery), so packed state is compressed

    # ---- counting ------------------------------------------------------------------------------------------
    def add(self, cols: MinuteColumns) -> None:
        self._unpack()
        self._count(cols)

    def _count(self, cols: MinuteColumns) -> None:
        if not isinstance(cols.all_projects, Coded):
            cols = _coded_columns(cols)
        t = self.tallies
        to_project = self.projects.column(cols.all_projects.table)  # batch code -> this minute's code
        codes = to_project[cols.all_projects.codes]
        t["with_mirrors"].add(codes)
        if cols.projects is not cols.all_projects:  # mirror downloads left out of every other dimension
            codes = to_project[cols.projects.codes]
        t["overall"].add(codes)
        high = codes << 32
        t["country"].add(high | self._categories(cols.countries))
        views = self._view_codes(cols.views.table)[cols.views.codes]
        for j, dim in enumerate(VIEW_DIMS):
            t[dim].add(high | self.view_cats[j][views])
        t["file_type"].add(high | self._categories(cols.file_types))
        t["version"].add(high | self._categories(cols.versions))

    def _categories(self, col: Coded) -> np.ndarray:
        return self.categories.column(col.table)[col.codes]

    def _view_codes(self, views: list) -> np.ndarray:
        """This minute's codes of a batch's distinct views; new ones get their per-dimension category codes."""
        known = len(self.views)
        codes = self.views.column(views)
        if len(self.views) > known:
            new = list(self.views)[known:]
            cats = self.categories
            for j in range(len(VIEW_DIMS)):
                added = np.fromiter((cats[v[j]] for v in new), np.int64, len(new))
                self.view_cats[j] = np.concatenate((self.view_cats[j], added))
        return codes

    # ---- packing -------------------------------------------------------------------------------------------
    def pack(self) -> None:
        if self.packed is None:
            self.packed = _pack_bytes(self._state(), compress=self.compress)
            self.projects = self.categories = self.views = self.view_cats = self.tallies = None

    def _unpack(self) -> None:
        if self.packed is not None:
            state = _unpack_bytes(self.packed)
            self.packed = None
            if _is_counters(state):  # packed by an earlier version, as Counters
                self.__init__(self.compress)
                self._from_counters(*state)
            else:
                self._load(state)

    def counted(self) -> MinuteRollup:
        """This minute with its counts readable; a packed minute stays packed (the clock may keep it)."""
        if self.packed is None:
            return self
        view = MinuteRollup.__new__(MinuteRollup)
        view.__setstate__(self.packed)
        view._unpack()
        return view

    def _state(self) -> tuple:
        return (
            "arrays",
            list(self.projects),
            list(self.categories),
            list(self.views),
            self.view_cats,
            {dim: t.compact() for dim, t in self.tallies.items()},
        )

    def _load(self, state: tuple) -> None:
        _, projects, categories, views, view_cats, tallies = state
        self.projects, self.categories, self.views = (
            Codes(zip(v, range(len(v)))) for v in (projects, categories, views)
        )
        self.view_cats, self.tallies = list(view_cats), tallies

    # ---- sealing -------------------------------------------------------------------------------------------
    def final(self, day: str) -> dict:
        """(day, project, dimension, category) -> downloads."""
        return MinuteRollup.merged_final([self], day)

    @staticmethod
    def merged_final(minutes: list[MinuteRollup], day: str) -> BlockRows:
        """`final` of several minutes of one day: their codes are mapped onto common ones and their counts summed
        with numpy, per dimension, before any row is built."""
        for rows in MinuteRollup.merge_steps(minutes, day):  # noqa: B007 - the last step's value is the rows
            pass
        return rows

    @staticmethod
    def merge_steps(minutes: list[MinuteRollup], day: str) -> Iterator[Optional[BlockRows]]:
        """`merged_final` in steps of a minute or a dimension (a few hundred milliseconds at most at 20,000
        events/s): yields None after each step, the rows last."""
        projects, categories = Codes(), Codes()
        merged: dict[str, list] = {dim: [] for dim in (*PER_PROJECT_DIMS, *PER_CATEGORY_DIMS)}
        for m in map(MinuteRollup.counted, minutes):
            to_p, to_c = projects.column(list(m.projects)), categories.column(list(m.categories))
            for dim, tally in m.tallies.items():
                keys = tally.compact().keys
                if dim in PER_PROJECT_DIMS:
                    keys = to_p[keys]
                else:
                    keys = (to_p[keys >> 32] << 32) | to_c[keys & _LOW]
                order = np.argsort(keys, kind="stable")  # remapped codes are no longer in order
                merged[dim] += (keys[order], tally.counts[order])
            yield None
        yield from _rows_in_key_order(merged, projects.table(), categories.table(), day)

    # ---- recovery ------------------------------------------------------------------------------------------
    def __getstate__(self):
        return self.packed if self.packed is not None else (self._state(), self.compress)

    def __setstate__(self, state):
        if isinstance(state, bytes):  # packed
            self.projects = self.categories = self.views = self.view_cats = self.tallies = None
            self.packed, self.compress = state, state[:1] == b"\x78"
            return
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], tuple) and state[0][:1] == ("arrays",):
            self.packed, self.compress = None, state[1]
            self._load(state[0])
            return
        self.__init__(logged=True)  # a snapshot of an earlier version: Counters, or a log of columns
        if state[0] == "log":
            _, log, base = state
            if base is not None:
                self._from_counters(*_unpack_bytes(base))
            for blob in log:
                for cols in pickle.loads(blob):
                    self._count(cols)
        else:
            self._from_counters(*state)

    def _from_counters(self, per_project: dict, per_category: dict) -> None:
        """Counts held as Counters by earlier versions (restored from their snapshots)."""
        for dim, counter in per_project.items():
            keys = self.projects.column(list(counter))
            self.tallies[dim] = _Tally(*_summed(*_sorted_pair(keys, counter.values())))
        for dim, counter in per_category.items():
            pairs = list(counter)
            keys = (self.projects.column([p for p, _ in pairs]) << 32) | self.categories.column([c for _, c in pairs])
            self.tallies[dim] = _Tally(*_summed(*_sorted_pair(keys, counter.values())))


def _coded_columns(cols: MinuteColumns) -> MinuteColumns:
    """Columns logged by an earlier version, as lists (restored from its snapshots)."""
    names = Codes()
    all_projects = Coded(names.column(cols.all_projects), [])
    projects = all_projects if cols.projects is cols.all_projects else Coded(names.column(cols.projects), [])
    all_projects.table = projects.table = list(names)
    return MinuteColumns(all_projects, projects, *map(Coded.of, cols[2:]))


def _ranks(table: np.ndarray) -> np.ndarray:
    """code -> its position in string order (None, stored as '', first)."""
    text = ["" if v is None else v for v in table.tolist()]
    order = sorted(range(len(text)), key=text.__getitem__)
    ranks = np.empty(len(text), dtype=np.int64)
    ranks[order] = np.arange(len(text), dtype=np.int64)
    return ranks


def _rows_in_key_order(
    merged: dict, p_table: np.ndarray, c_table: np.ndarray, day: str
) -> Iterator[Optional[BlockRows]]:
    """The summed counts in the sink's primary-key order: one numpy argsort over (project rank, dimension rank,
    category rank) packed in an int64 (sorting a million Python tuples took ~4 s). In steps, as `merge_steps`."""
    p_rank, c_rank = _ranks(p_table), _ranks(c_table) + 1  # 0: the category of per-project dimensions
    yield None
    dims = sorted(merged)
    sort_keys, projects, categories, counts, dim_of = [], [], [], [], []
    for d, dim in enumerate(dims):
        keys, n = _summed(*merged[dim])
        if dim in PER_PROJECT_DIMS:
            p, c, rank = keys, np.full(len(keys), -1, dtype=np.int64), 0
        else:
            p, c = keys >> 32, keys & _LOW
            rank = c_rank[c]
        sort_keys.append((p_rank[p] << 36) | (d << 32) | rank)
        projects.append(p)
        categories.append(c)
        counts.append(n)
        dim_of.append(np.full(len(keys), d, dtype=np.int64))
        yield None
    order = np.argsort(np.concatenate(sort_keys), kind="stable") if sort_keys else _EMPTY
    del sort_keys
    yield None
    columns = []
    for cols in (projects, dim_of, categories, counts):
        columns.append(np.concatenate(cols)[order] if cols else _EMPTY)
        cols.clear()
        yield None
    p_col, dim_col, c_col, n_col = columns
    yield BlockRows(day, p_table, p_col, dims, dim_col, np.append(c_table, None), c_col, n_col)


class BlockRows(Mapping):
    """A sealed block's counts, (day, project, dimension, category) -> downloads, held as numpy columns in key
    order. The history takes them as Arrow columns (`arrow`), so a block of millions of rows never exists as
    millions of Python tuples (about 200 MB per million); read as a mapping, it is built once, whole."""

    def __init__(
        self,
        day: str,
        p_table: np.ndarray,
        projects: np.ndarray,
        dims: list[str],
        dim_of: np.ndarray,
        c_table: np.ndarray,
        categories: np.ndarray,
        counts: np.ndarray,
    ):
        self.day, self.p_table, self.projects, self.dims, self.dim_of = day, p_table, projects, dims, dim_of
        self.c_table, self.categories, self.counts = c_table, categories, counts  # category -1: None (the last entry)
        self._dict: Optional[dict] = None

    @property
    def days(self) -> set[str]:
        return {self.day} if len(self.counts) else set()

    def arrow(self) -> pa.Table:
        """(project, dimension, category, downloads) columns for the history, built from the codes in C."""
        n_c = len(self.c_table)
        return pa.table(
            {
                "project": pa.array(self.p_table, pa.string()).take(pa.array(self.projects)),
                "dimension": pa.array(self.dims, pa.string()).take(pa.array(self.dim_of)),
                "category": pa.array(self.c_table, pa.string()).take(pa.array(self.categories % n_c)),
                "downloads": pa.array(self.counts, pa.int64()),
            }
        )

    def as_dict(self) -> dict:
        if self._dict is None:
            self._dict = dict(
                zip(
                    zip(
                        repeat(self.day),
                        self.p_table[self.projects].tolist(),
                        map(self.dims.__getitem__, self.dim_of.tolist()),
                        self.c_table[self.categories].tolist(),
                    ),
                    self.counts.tolist(),
                )
            )
        return self._dict

    def __getitem__(self, key):
        return self.as_dict()[key]

    def __iter__(self):
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.counts)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_dict"}

    def __setstate__(self, state):
        self.__dict__.update(state, _dict=None)


def _sorted_pair(keys: np.ndarray, counts) -> tuple[np.ndarray, np.ndarray]:
    counts = np.fromiter(counts, np.int64, len(keys))
    order = np.argsort(keys, kind="stable")
    return keys[order], counts[order]


def _is_counters(state) -> bool:
    return isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict)
