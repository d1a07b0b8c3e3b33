"""Recovery snapshots refer to the clock's packed state, written once beside the recovery store, instead of copying
it every epoch (dataflow/spill.py): restores are exact, and what no recent snapshot refers to is deleted."""

from __future__ import annotations

import pytest

from pypi_pulse.dataflow.clock import Clock
from pypi_pulse.dataflow.parse import parse_batch
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.dataflow.spill import SpillStore
from pypi_pulse.errors import UserError
from pypi_pulse.producer.synthetic import SyntheticSource

T0 = 1795219200  # 2026-11-21T00:00:00Z, a block boundary
SRC = SyntheticSource(seed=5)


def part(first_s: float, seconds: float, rate: int, offset: int, wall: float):
    n = int(seconds * rate)
    rows = [v for v, _ in SRC.encoded([first_s + i / rate for i in range(n)])]
    return parse_batch(RawBatch(0, 1, rows, offset, False, wall=wall))


def segments(store: SpillStore) -> set[str]:
    return {p.name for p in store.dir.glob("*" + SpillStore.SUFFIX)}


def clock_with_packed_minutes() -> Clock:
    clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2, log_open_minutes=True)
    clock.add(part(T0, 130, 200, 0, wall=1.0))  # two complete minutes and part of a third
    clock.flush(1.0, force=True)
    assert clock.rollups[T0].packed is not None and clock.rollups[T0 + 60].packed is not None
    return clock


def test_packed_state_is_written_once_and_later_snapshots_only_refer_to_it(tmp_path):
    clock = clock_with_packed_minutes()
    store = SpillStore(tmp_path)
    packed = len(clock.rollups[T0].packed) + len(clock.rollups[T0 + 60].packed)
    assert packed > 2 * SpillStore.MIN_BYTES
    first = clock.snapshot(store)
    written = segments(store)
    assert len(written) == 1 and sum((tmp_path / s).stat().st_size for s in written) >= packed
    assert store.bytes_on_disk == sum((tmp_path / s).stat().st_size for s in written)  # the dataflow's gauge
    again = clock.snapshot(store)
    assert segments(store) == written  # nothing new to write: the same references
    assert len(again) == len(first) < len(clock.snapshot()) - packed + 1000  # a reference is a few dozen bytes
    store = SpillStore(tmp_path)  # a restarted process: what it read back is not written again
    Clock.restore(first, store).snapshot(store)
    assert segments(store) == written


def test_a_restart_from_spilled_snapshots_counts_exactly_as_an_uninterrupted_run(tmp_path):
    plain = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
    snapped = Clock(lateness_s=60, out_of_order_s=0, idle_s=2, log_open_minutes=True)
    store = SpillStore(tmp_path)
    blocks: dict[str, dict] = {"plain": {}, "snapped": {}}  # a restored clock sends its unapplied block again
    for k in range(26):  # batches of 30 s: a block sealed, windows and minutes packed, late events in between
        first = T0 + 30 * k if k % 4 else T0 + 30 * k - 45  # every fourth batch starts with late events
        batch = part(first, 30, 100, 3000 * k, wall=1.0 + k)
        for name, clock in (("plain", plain), ("snapped", snapped)):
            clock.add(batch)
            blocks[name].update((b.bucket, b.counts) for b in clock.flush(1.0 + k, force=True).sealed)
        blob = snapped.snapshot(store)
        if k % 3 == 2:  # a new process: a new store over the same directory
            store = SpillStore(tmp_path)
            snapped = Clock.restore(blob, store)
            blocks["snapped"].update((b.bucket, b.counts) for b in snapped.flush(1.5 + k, force=True).sealed)
    assert sorted(blocks["plain"]) == [T0 - 600, T0] and blocks["plain"] == blocks["snapped"]
    assert plain.counters == snapped.counters
    assert {s: w.row(s) for s, w in plain.windows.items()} == {s: w.row(s) for s, w in snapped.windows.items()}


def test_a_segment_is_deleted_once_no_recent_snapshot_refers_to_it(tmp_path):
    clock = clock_with_packed_minutes()
    store = SpillStore(tmp_path)
    clock.snapshot(store)
    (old,) = segments(store)
    clock.add(part(T0 + 10, 1, 50, 26_000, wall=2.0))  # late events unpack both complete minutes
    clock.add(part(T0 + 70, 1, 50, 26_050, wall=2.0))
    for _ in range(SpillStore.KEEP_SNAPSHOTS - 1):
        clock.snapshot(store)
        assert old in segments(store)  # a restore may still start from a snapshot that refers to it
    clock.snapshot(store)
    assert old not in segments(store)
    assert store.bytes_on_disk == sum((tmp_path / s).stat().st_size for s in segments(store))


def test_a_snapshot_whose_segment_is_gone_fails_with_how_to_start_over(tmp_path):
    store = SpillStore(tmp_path)
    blob = clock_with_packed_minutes().snapshot(store)
    for s in segments(store):
        (tmp_path / s).unlink()
    with pytest.raises(UserError, match="--fresh-recovery"):
        Clock.restore(blob, SpillStore(tmp_path))


def test_a_blob_no_snapshot_refers_to_any_more_is_let_go_without_waiting_for_the_garbage_collector(tmp_path):
    """A live dataflow releases a sealed block once the sink has it: its packed minutes must leave memory then,
    not whenever a full garbage collection happens to run (minutes later, 20-70 MiB at 20,000 events/s)."""
    import gc
    import sys

    store = SpillStore(tmp_path)
    blob = bytes(SpillStore.MIN_BYTES) + b"sealed minute"
    alone = sys.getrefcount(blob)
    snapshot = store.dumps({"unapplied": [blob]})
    assert sys.getrefcount(blob) == alone + 1  # listed as written: the next snapshot refers to it, not copies it
    gc.disable()
    try:
        store.dumps({"unapplied": []})
        assert sys.getrefcount(blob) == alone
    finally:
        gc.enable()
    assert SpillStore(tmp_path).loads(snapshot) == {"unapplied": [blob]}
