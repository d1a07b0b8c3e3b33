"""The event-time clock: per-partition watermark, early results, late updates, drops past the lateness horizon."""

from __future__ import annotations

from collections import Counter

import orjson

from pypi_pulse.dataflow.clock import BLOCK_S, Clock
from pypi_pulse.dataflow.parse import parse_batch
from pypi_pulse.dataflow.source import RawBatch

T0 = 1795219200  # 2026-11-21T00:00:00Z


def ev(sec: float, project: str = "numpy", cc: str = "US") -> bytes:
    return orjson.dumps({"timestamp": sec, "project": project, "country_code": cc})


def batch(part: int, secs, n_parts: int = 2, caught_up: bool = False, wall: float = 0.0, **kw) -> object:
    raw = RawBatch(part, n_parts, [ev(s, **kw) for s in secs], 0, caught_up, wall=wall)
    return parse_batch(raw)


def emitted(flush) -> dict[int, int]:
    return {w.start: w.downloads for w in flush.windows} if flush else {}


def test_a_fast_partition_does_not_close_windows_a_slow_one_still_feeds():
    clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2)
    clock.add(batch(0, [T0 + s for s in range(0, 100)], wall=100.0))  # partition 0 races 100 s ahead
    clock.add(batch(1, [T0 + 0.5], wall=100.0))  # partition 1 is still at T0
    assert emitted(clock.flush(100.0, force=True)) == {}  # nothing closes: partition 1 holds the watermark
    clock.add(batch(1, [T0 + 1.5, T0 + 2.2, T0 + 3.1], wall=100.1))
    out = emitted(clock.flush(100.1, force=True))
    assert out == {T0: 2, T0 + 1: 2, T0 + 2: 2}  # closed once both partitions passed them, with both counts
    assert clock.counters["late"] == 0


def test_a_silent_caught_up_partition_stops_holding_the_watermark():
    clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2)
    clock.add(batch(0, [T0, T0 + 1, T0 + 2], wall=10.0))
    clock.add(batch(1, [], caught_up=True, wall=10.0))  # nothing ever arrives on partition 1
    # silent since it was first seen, not since the epoch: it holds the watermark idle_s, as a partition whose
    # producer is about to start would need
    assert emitted(clock.flush(11.9, force=True)) == {}
    assert emitted(clock.flush(12.0, force=True)) == {T0: 1, T0 + 1: 1}
    # the stream pauses: everything seen is closed after idle_s
    clock.add(batch(0, [], caught_up=True, wall=13.0))
    assert emitted(clock.flush(13.0, force=True)) == {T0 + 2: 1}


def test_late_events_update_their_window_and_too_late_ones_are_dropped_and_counted():
    clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
    clock.add(batch(0, [T0 + s for s in range(0, 300)], n_parts=1, wall=1.0))
    first = emitted(clock.flush(1.0, force=True))
    assert first[T0 + 250] == 1
    clock.add(batch(0, [T0 + 250.5, T0 + 250.7], n_parts=1, wall=2.0))  # 49 s behind the watermark: late, accepted
    clock.add(batch(0, [T0 + 10], n_parts=1, wall=2.0))  # ~290 s behind: past the horizon
    again = clock.flush(2.0, force=True)
    assert emitted(again) == {T0 + 250: 3}  # only the updated window is re-emitted, with its full count
    assert clock.counters["late"] == 2 and clock.counters["dropped"] == 1
    assert again.stats.counters["counted"] == 302


def zope_rows(seconds) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "timestamp": T0 + s,
                "project": "Zope.Interface",
                "country_code": "DE",
                "details": {"installer": {"name": "pip"}, "python": "3.12.1", "system": {"name": "Linux"}},
            }
        )
        for s in seconds
    ]


def test_rollups_leave_in_whole_sealed_blocks_with_derived_dimensions():
    clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
    rows = zope_rows(range(0, 1300))
    rows.append(
        orjson.dumps(
            {"timestamp": T0 + 5, "project": "zope-interface", "details": {"installer": {"name": "bandersnatch"}}}
        )
    )
    clock.add(parse_batch(RawBatch(0, 1, rows, 0, False, wall=1.0)))
    buckets = clock.flush(1.0, force=True).sealed
    # seconds before watermark - lateness (T0 + 1239, rounded down to T0 + 1200) are sealed: two whole blocks
    assert [(b.bucket, b.span) for b in buckets] == [(T0, BLOCK_S), (T0 + BLOCK_S, BLOCK_S)]
    first = buckets[0].counts
    day = "2026-11-21"
    assert first[(day, "zope-interface", "overall", None)] == 600
    assert first[(day, "zope-interface", "with_mirrors", None)] == 601
    assert first[(day, "zope-interface", "python_minor", "3.12")] == 600
    assert first[(day, "zope-interface", "python_major", "3")] == 600
    assert first[(day, "zope-interface", "system", "Linux")] == 600
    assert first[(day, "zope-interface", "country", "DE")] == 600
    assert (day, "zope-interface", "mirror", None) not in first
    # nothing is sealed twice
    assert clock.flush(2.0, force=True).sealed == []


def test_a_block_is_the_same_whatever_batches_bring_it():
    """What lets the sink apply a block once after a recovery replays it: not the batches, only the data decides
    a block's bounds and content."""

    def run(batch_sizes):
        clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
        rows, out, i, wall = zope_rows(range(0, 1500)), [], 0, 1.0
        for n in batch_sizes:
            clock.add(parse_batch(RawBatch(0, 1, rows[i : i + n], i, False, wall=wall)))
            out += clock.flush(wall, force=True).sealed
            i, wall = i + n, wall + 1
        return out

    one = run([1500])
    many = run([7, 613, 1, 250, 629])
    assert [(b.bucket, b.span, b.counts) for b in one] == [(b.bucket, b.span, b.counts) for b in many]
    assert [b.bucket for b in one] == [T0, T0 + BLOCK_S]


def test_state_survives_a_snapshot_round_trip():
    clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2)
    clock.add(batch(0, [T0, T0 + 1], n_parts=1, wall=1.0))
    restored = Clock.restore(clock.snapshot())
    restored.add(batch(0, [T0 + 2], n_parts=1, wall=2.0))
    assert emitted(restored.flush(2.0, force=True)) == {T0: 1, T0 + 1: 1}
    assert restored.counters["counted"] == 3


def test_restarts_from_any_epoch_give_the_same_rollups_as_an_uninterrupted_run():
    plain = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
    snapped = Clock(lateness_s=60, out_of_order_s=0, idle_s=2, log_open_minutes=True)
    rows = zope_rows(range(0, 1300))
    for k, i in enumerate(range(0, 1300, 20)):
        part = parse_batch(RawBatch(0, 1, rows[i : i + 20], i, False, wall=1.0 + k))
        plain.add(part)
        snapped.add(part)
        blob = snapped.snapshot()
        if k % 7 == 3:
            snapped = Clock.restore(blob)  # a restart from this epoch resumes from here
        if k % 5 == 0:  # windows close, complete minutes are packed, as they are between batches
            plain.flush(1.0 + k, force=True)
            snapped.flush(1.0 + k, force=True)
    a, b = plain.flush(99.0, force=True), snapped.flush(99.0, force=True)
    assert a.sealed and [(x.bucket, x.span, x.counts) for x in a.sealed] == [
        (x.bucket, x.span, x.counts) for x in b.sealed
    ]


def test_a_late_event_in_a_packed_minute_survives_a_restore():
    clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2, log_open_minutes=True)
    clock.add(parse_batch(RawBatch(0, 1, zope_rows(range(0, 130)), 0, False, wall=1.0)))
    clock.flush(1.0, force=True)  # the first minute completes and is packed
    assert clock.rollups[T0].packed is not None
    clock.add(parse_batch(RawBatch(0, 1, zope_rows([10, 11]), 130, False, wall=2.0)))  # late, into that minute
    restored = Clock.restore(clock.snapshot())
    restored.add(parse_batch(RawBatch(0, 1, zope_rows(range(130, 1300)), 132, False, wall=3.0)))
    buckets = restored.flush(99.0, force=True).sealed
    assert buckets[0].counts[("2026-11-21", "zope-interface", "overall", None)] == 602


def test_with_recovery_a_sealed_block_is_kept_until_the_sink_has_applied_it():
    clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2, log_open_minutes=True)
    clock.add(parse_batch(RawBatch(0, 1, zope_rows(range(0, 700)), 0, False, wall=1.0)))
    sealed = clock.flush(1.0, force=True).sealed
    assert [b.bucket for b in sealed] == [T0]
    assert list(clock.unapplied) == [T0]
    # the process dies before the sink has the whole block: the restored clock sends it again, unchanged
    restored = Clock.restore(clock.snapshot())
    again = restored.flush(2.0, force=True).sealed
    assert [(b.bucket, b.span, b.counts) for b in again] == [(b.bucket, b.span, b.counts) for b in sealed]
    assert restored.flush(3.0, force=True).sealed == []  # sent once per restore, not on every flush
    restored.release({T0})
    assert restored.unapplied == {}
    assert Clock.restore(restored.snapshot()).flush(4.0, force=True).sealed == []


def test_a_sealed_block_holds_blocks_before_back_until_it_is_written():
    """Its shard writes it off the worker (dataflow/blocks.py): until then no report may say it has left, or the
    store could compact its day without it."""
    clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
    clock.add(parse_batch(RawBatch(0, 1, zope_rows(range(0, 700)), 0, False, wall=1.0)))
    flush = clock.flush(1.0, force=True)
    assert [b.bucket for b in flush.sealed] == [T0]
    assert flush.stats.blocks_before == T0 and list(clock.unapplied) == [T0]
    clock.release({T0})
    assert clock.unapplied == {} and clock.stats(2.0).blocks_before == T0 + 600


def test_a_sealed_block_builds_its_sink_rows_slice_by_slice_in_key_order():
    rows = [
        orjson.dumps(
            {
                "timestamp": T0 + i % 600,
                "project": ("numpy", "Zope.Interface", "requests")[i % 3],
                "country_code": ("DE", "US", None)[i % 3 - 1],
                "file": {"version": f"1.{i % 7}"},
                "details": {"installer": {"name": ("pip", "uv")[i % 2]}, "python": f"3.{10 + i % 3}.1"},
            }
        )
        for i in range(3000)
    ]
    clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2)
    clock.add(parse_batch(RawBatch(0, 1, rows, 0, False, wall=1.0)))
    clock.add(parse_batch(RawBatch(0, 1, [ev(T0 + 700)], 3000, False, wall=2.0)))
    (block,) = clock.flush(2.0, force=True).sealed
    counts = block.counts
    whole = [(d, p, dim, "" if c is None else c, n) for (d, p, dim, c), n in dict(counts).items()]
    assert whole == sorted(whole) and len(whole) == len(counts)
    arrow = counts.arrow().to_pydict()  # the history's columns: the same rows, in the same order
    rows = zip(arrow["project"], arrow["dimension"], arrow["category"], arrow["downloads"])
    assert [(counts.day, p, dim, c or "", n) for p, dim, c, n in rows] == whole
    assert sum(n for (_d, _p, dim, _c), n in counts.items() if dim == "with_mirrors") == 3000


def test_at_the_end_of_a_batch_run_a_days_remaining_blocks_leave_as_one_bucket():
    """Without recovery nothing is replayed, so the blocks sealed by the end of input need not stay apart: one
    bucket per day, its rows written once. With recovery they leave block by block, as always."""
    rows = zope_rows(range(-300, 1500))  # from 23:55 across midnight to 00:25

    def sealed(recovery: bool):
        clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2, log_open_minutes=recovery)
        clock.add(parse_batch(RawBatch(0, 1, rows, len(rows), False, final=True, wall=1.0)))
        return clock.flush(1.0, force=True).sealed

    per_block = sealed(recovery=True)
    assert [(b.bucket, b.span) for b in per_block] == [(T0 - 600, 600), (T0, 600), (T0 + 600, 600), (T0 + 1200, 600)]
    whole = sealed(recovery=False)
    assert [(b.bucket, b.span) for b in whole] == [(T0 - 600, 600), (T0, 1800)]
    assert dict(whole[0].counts) == dict(per_block[0].counts)
    summed = sum((Counter(dict(b.counts)) for b in per_block[1:]), Counter())
    assert Counter(dict(whole[1].counts)) == summed
    assert len(whole[1].counts) == len(summed)  # one row per key, not one per key and block


def _buckets_while_streaming(hold_blocks_events: int, seconds, step: int = 60) -> list[tuple[int, int, bool]]:
    """(bucket, span, at the end of input) of every bucket a clock sends while a time-ordered input streams by
    in batches of `step` seconds, then ends."""
    clock = Clock(lateness_s=120, out_of_order_s=0, idle_s=2, hold_blocks_events=hold_blocks_events)
    out = []
    seconds = list(seconds)
    for i in range(0, len(seconds), step):
        rows = zope_rows(seconds[i : i + step])
        last = i + step >= len(seconds)
        clock.add(parse_batch(RawBatch(0, 1, rows, i + step, False, final=last, wall=1.0)))
        flush = clock.flush(1.0 + i, force=last)
        if flush:
            out += [(b.bucket, b.span, last) for b in flush.sealed]
    return out


def test_a_batch_run_holds_a_days_sealed_blocks_and_sends_them_as_one_bucket_when_the_day_or_input_ends():
    """Held, a block's rows are written once with the rest of its day's, instead of once per block (a block
    sealed a moment before the end of input cost 0.3 s more). Across midnight the finished day leaves at once."""
    seconds = range(-1800, 1500, 2)  # 23:30 to 00:25, every other second
    unheld = _buckets_while_streaming(0, seconds)
    assert [(b, span) for b, span, _ in unheld] == [(T0 - 1800 + 600 * i, 600) for i in range(6)]
    assert not all(end for _, _, end in unheld)  # blocks left while the input streamed
    held = _buckets_while_streaming(10_000_000, seconds)
    assert held == [(T0 - 1800, 1800, False), (T0, 1800, True)]  # the 20th once over, the 21st at the end


def test_held_blocks_leave_once_they_hold_the_batch_limit_of_events():
    seconds = range(0, 3000, 2)  # 50 minutes, 300 events per block
    held = _buckets_while_streaming(600, seconds)
    assert held == [(T0, 1200, False), (T0 + 1200, 1200, False), (T0 + 2400, 600, True)]  # two blocks at a time


def test_a_clock_resumed_after_a_drained_run_counts_new_events_and_drops_those_of_written_blocks():
    """A drained run ends with every partition final and everything sealed: resumed from that snapshot, the clock
    must count what comes next (it dropped every new event), and drop, counted, what falls in a block it wrote."""
    clock = Clock(lateness_s=60, out_of_order_s=0, idle_s=2, log_open_minutes=True)
    clock.add(parse_batch(RawBatch(0, 1, [ev(T0 + s) for s in range(0, 30)], 30, True, final=True, wall=1.0)))
    drained = clock.flush(1.0, force=True)
    assert len(drained.windows) == 30 and [b.bucket for b in drained.sealed] == [T0]
    clock.release({T0})
    resumed = Clock.restore(clock.snapshot())
    later, early = [T0 + 600 + s for s in range(5)], [T0 + 100]  # the next block, and one already written
    resumed.add(parse_batch(RawBatch(0, 1, [ev(s) for s in later + early], 36, True, wall=2.0)))
    out = resumed.flush(10.0, force=True)  # caught up and silent for idle_s: every second seen closes
    assert emitted(out) == {s: 1 for s in later}
    counters = out.stats.counters
    assert counters["dropped"] == 1 and counters["counted"] == 30 + 5 and counters["consumed"] == 36
