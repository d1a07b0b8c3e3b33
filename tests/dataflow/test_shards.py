"""Sharding by project is exact: the shards' partials add up to the batch, each project lives in one shard, and
shard clocks merged per second give the windows, counters and rollups a single clock gives, late events included.

The single clock is the reference here (tests/dataflow/test_exact_windows.py and test_rollups.py check it against
counts computed from the events); these tests run clocks and the merge in process, without Bytewax, so that every
interleaving they check is the one written here.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter

import orjson
from expected_rollups import make_event

from pypi_pulse.dataflow.clock import Clock
from pypi_pulse.dataflow.merge import Merge, merged_row
from pypi_pulse.dataflow.parse import parse_batch, parse_shards
from pypi_pulse.dataflow.partials import shard_of
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.sink.model import WindowRow

T0 = 1795219200 + 86400 - 90  # 90 s before a UTC midnight
SHARDS = 5


def _batches(seed: int, n_batches: int = 40, per_batch: int = 300, partitions: int = 3) -> list[RawBatch]:
    """Batches of real-shape events from several partitions, each partition in time order with some late events
    (a few seconds, and a few past a short lateness horizon), plus a bad line; each partition's input then ends."""
    rng = random.Random(seed)
    out = []
    clock = {p: T0 for p in range(partitions)}
    for i in range(n_batches):
        p = i % partitions
        events = []
        for _ in range(per_batch):
            clock[p] += rng.random() * 0.6
            late = rng.random()
            ts = clock[p] - (rng.uniform(1, 8) if late < 0.05 else rng.uniform(80, 120) if late < 0.06 else 0)
            events.append(orjson.dumps(make_event(rng, ts)))
        if i == 7:
            events.append(b'{"timestamp": "not a time", "project": "x"}')
        last = i >= n_batches - partitions  # each partition's last batch ends its input: everything then closes
        out.append(RawBatch(p, partitions, events, (i // partitions + 1) * per_batch, last, last, wall=1000.0 + i))
    return out


def test_shards_split_a_batch_exactly_and_keep_each_project_in_one_shard():
    for raw in _batches(1, n_batches=6):
        whole = parse_batch(raw)
        parts = parse_shards(raw, SHARDS)
        assert [p.shard for p in parts] == list(range(SHARDS))
        assert sum(p.consumed for p in parts) == whole.consumed
        for p in parts:  # each shard's events, and the dead letters with shard 0: every shard's counters add up
            events = sum(n for n in p.country_counts.values())
            assert p.consumed == events + (len(p.dead) if p.shard == 0 else 0)
        assert sum((p.country_counts for p in parts), Counter()) == whole.country_counts
        assert {p.max_second for p in parts} == {whole.max_second}  # every shard learns the partition's progress
        assert [len(p.dead) for p in parts[1:]] == [0] * (SHARDS - 1) and parts[0].dead == whole.dead
        for k, p in enumerate(parts):
            for projects in p.second_projects.values():
                assert {shard_of(name, SHARDS) for name in projects.values()} <= {k}
        per_second = Counter()
        for p in parts:
            for s, projects in p.second_projects.items():
                per_second.update((s, name) for name in projects.values())
        assert per_second == Counter((s, n) for s, c in whole.second_projects.items() for n in c.values())


def test_the_shard_of_a_project_is_the_same_in_every_process():
    # CRC-32 of the PEP 503 name: fixed values, not Python's per-process salted hash
    names = ("numpy", "boto3", "zope-interface")
    assert [shard_of(p, 8) for p in names] == [zlib.crc32(p.encode()) % 8 for p in names]


def test_merged_parts_of_disjoint_projects_are_the_whole_window():
    a = WindowRow(5, 6, 2, {"US": 4, "DE": 2}, [("numpy", 4), ("boto3", 2)])
    b = WindowRow(5, 5, 3, {"US": 1, "FR": 4}, [("attrs", 2), ("six", 2), ("idna", 1)])
    assert merged_row(5, [a, b]) == WindowRow(
        5, 11, 5, {"US": 5, "DE": 2, "FR": 4}, [("numpy", 4), ("attrs", 2), ("boto3", 2), ("six", 2), ("idna", 1)]
    )


def _run_single(batches: list[RawBatch], lateness: float) -> tuple[dict, Counter, dict]:
    clock = Clock(lateness_s=lateness, out_of_order_s=0, idle_s=2, emit_every_s=0)
    windows, rollups = {}, Counter()
    for raw in batches:
        clock.add(parse_batch(raw))
        out = clock.flush(raw.wall)
        if out:
            windows.update({w.start: w for w in out.windows})
            for b in out.sealed:
                rollups.update(dict(b.counts))
    final = clock.flush(2000.0, force=True)
    windows.update({w.start: w for w in final.windows})
    for b in final.sealed:
        rollups.update(dict(b.counts))
    return windows, rollups, final.stats.counters


def _run_sharded(
    batches: list[RawBatch], lateness: float, order_seed: int, skip: float = 0.0
) -> tuple[dict, Counter, dict]:
    """Shard clocks fed the same batches in a shuffled order per batch, their flushes merged as the dataflow merges
    them; with `skip`, a shard leaves out that share of its flushes (its seals then come later than one clock's)."""
    rng = random.Random(order_seed)
    clocks = [Clock(lateness_s=lateness, out_of_order_s=0, idle_s=2, emit_every_s=0) for _ in range(SHARDS)]
    merge = Merge(SHARDS, 0.0, lateness)
    windows, rollups = {}, Counter()

    def take(out) -> None:
        if out is not None:
            windows.update({w.start: w for w in out.windows})

    def seal(flush) -> None:  # a shard writes its own blocks (dataflow/blocks.py); only windows reach the merge
        for b in flush.sealed:
            rollups.update(dict(b.counts))

    for raw in batches:
        parts = parse_shards(raw, SHARDS)
        for k in rng.sample(range(SHARDS), SHARDS):
            clocks[k].add(parts[k])
            if rng.random() >= skip:
                flush = clocks[k].flush(raw.wall)
                if flush is not None:
                    seal(flush)
                    merge.add(k, flush)
                    take(merge.flush())
    for k in range(SHARDS):
        flush = clocks[k].flush(2000.0, force=True)
        seal(flush)
        merge.add(k, flush)
        take(merge.flush())
    take(merge.flush(force=True))
    return windows, rollups, merge.merged_stats().counters


def test_sharded_clocks_merged_per_second_equal_one_clock_late_events_and_drops_included():
    """Every shard flushes after every batch, as the one clock does, so each seals at the same points: the merged
    result is the one clock's, whatever order the shards' flushes reach the merge in."""
    for seed in (2, 3):
        batches = _batches(seed)
        single_windows, single_rollups, single_counters = _run_single(batches, lateness=60)
        windows, rollups, counters = _run_sharded(batches, lateness=60, order_seed=seed)
        assert windows == single_windows
        assert rollups == single_rollups
        assert counters == single_counters
        assert counters["late"] > 0 and counters["dropped"] > 0 and counters["dead_lettered"] == 1
        assert counters["counted"] + counters["dropped"] + counters["dead_lettered"] == counters["consumed"]


def test_shards_flushing_on_their_own_schedules_count_every_event_once():
    """Shards that flush at different moments seal at different moments, so an event near the lateness horizon may
    be counted by one arrangement and dropped by another, as with one clock flushing at other times; either way
    each event is counted once or dropped, and the windows and the rollups both hold exactly the counted ones."""
    for seed in (4, 5):
        windows, rollups, counters = _run_sharded(_batches(seed), lateness=60, order_seed=seed, skip=0.4)
        assert counters["counted"] + counters["dropped"] + counters["dead_lettered"] == counters["consumed"]
        assert sum(w.downloads for w in windows.values()) == counters["counted"]
        assert sum(n for (_d, _p, dim, _c), n in rollups.items() if dim == "with_mirrors") == counters["counted"]
        assert all(w.unique_packages == len({p for p, _ in w.top}) for w in windows.values() if len(w.top) < 10)
