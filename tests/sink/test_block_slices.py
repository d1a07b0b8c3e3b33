"""Sealed rollup blocks applied a slice at a time: windows keep flowing meanwhile, and a block is counted exactly
once however its application is cut short and resumed."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from expected_rollups import stored_daily, stored_totals, totals_of

from pypi_pulse.dataflow.clock import Flush
from pypi_pulse.dataflow.outputs import _StorePartition
from pypi_pulse.metrics import dataflow_metrics
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow

T0 = 1795219200  # 2026-11-21T00:00:00Z, a block boundary
DAY = "2026-11-21"


def block(n_projects: int = 900, start: int = T0) -> RollupBucket:
    counts = {}
    for i in range(n_projects):
        p = f"project-{i:04d}"
        counts[(DAY, p, "overall", None)] = i + 1
        counts[(DAY, p, "country", "US")] = i
        counts[(DAY, p, "country", None if i % 3 else "DE")] = counts.get((DAY, p, "country", "DE"), 0) + 1
    return RollupBucket(start, counts, span=600)


def stats() -> PipelineStats:
    return PipelineStats({"consumed": 1}, {0: 1}, None, 0.0)


def test_a_block_cut_short_and_sent_again_counts_every_row_once(sqlite_url):
    b = block()
    with open_sink(sqlite_url) as sink:
        sink.SLICE_ROWS = 250
        steps = sink.apply_in_slices(b)
        for _ in range(4):  # four slices in, then the process dies
            next(steps)
        assert 0 < sum(stored_daily(sink).values()) < sum(b.counts.values())
        assert sink.applied_buckets([T0]) == set()
    with open_sink(sqlite_url) as sink:  # restarted: the clock sends the block again
        sink.SLICE_ROWS = 250
        for _ in sink.apply_in_slices(b):
            pass
        assert stored_daily(sink) == Counter(b.counts)
        assert stored_totals(sink) == totals_of(b.counts)
        assert sink.applied_buckets([T0, T0 + 600]) == {T0}
        assert sink.query("SELECT COUNT(*) FROM rollup_slices") == [(0,)]
        for _ in sink.apply_in_slices(b):  # and once more: already applied, nothing changes
            pass
        assert stored_daily(sink) == Counter(b.counts)


def test_every_backend_applies_a_block_once_through_the_slice_interface(sink_url):
    b = block(50)
    with open_sink(sink_url) as sink:
        for _ in range(2):
            for _ in sink.apply_in_slices(b):
                pass
        assert stored_daily(sink) == Counter(b.counts)
        assert sink.applied_buckets([T0]) == {T0}


def test_a_whole_write_of_a_block_being_applied_in_slices_is_refused(sqlite_url):
    b = block()
    with open_sink(sqlite_url) as sink:
        sink.SLICE_ROWS = 250
        next(sink.apply_in_slices(b))
        with pytest.raises(RuntimeError, match="being applied in slices"):
            sink.write([], [b], None)


def test_a_day_backfilled_between_two_slices_holds_exactly_the_backfill(sqlite_url):
    b = block()
    with open_sink(sqlite_url) as sink:
        sink.SLICE_ROWS = 250
        steps = sink.apply_in_slices(b)
        next(steps)
        sink.backfill_day(DAY, [("numpy", "overall", None, 7)], "test")
        for _ in steps:
            pass
        assert stored_daily(sink) == Counter({(DAY, "numpy", "overall", None): 7})


def test_windows_reach_the_sink_while_a_big_block_is_still_going_in(sqlite_url):
    partition = _StorePartition(sqlite_url, 48 * 3600, 400)
    partition.sink.SLICE_ROWS = 10
    partition.SLICE_SHARE, partition.slice_time.credit_s = 0.0, 0.01  # time for a few slices, then none
    b = block()
    window = WindowRow(T0 + 900, 5, 1, {"US": 5}, [("numpy", 5)])
    partition.write_batch([Flush([window], [b], stats())])
    with open_sink(sqlite_url, readonly=True) as reader:
        assert [w.start for w in reader.latest_windows(5)] == [T0 + 900]
        assert reader.applied_buckets([T0]) == set()  # the block is still going in
        assert 0 < sum(stored_daily(reader).values()) < sum(b.counts.values())
        assert dataflow_metrics.ROLLUP_PENDING._value.get() == 1  # what operators see (alert: PyPIPulseRollupBacklog)
        partition.write_batch([Flush([WindowRow(T0 + 901, 1, 1, {"DE": 1}, [("numpy", 1)])], [b], stats())])
        assert len(partition.applying) == 1  # sent again by the clock: queued once
        partition.close()  # end of input: the rest of the block goes in
        assert stored_daily(reader) == Counter(b.counts)
        assert reader.applied_buckets([T0]) == {T0}
        assert dataflow_metrics.ROLLUP_PENDING._value.get() == 0


def test_at_the_end_of_input_a_block_not_started_goes_in_whole(sqlite_url):
    partition = _StorePartition(sqlite_url, 48 * 3600, 400)
    partition.SLICE_SHARE, partition.slice_time.credit_s = 0.0, 0.0  # no time for slices during the run
    b = block()
    partition.write_batch([Flush([], [b], stats())])
    partition.close()
    with open_sink(sqlite_url, readonly=True) as reader:
        assert stored_daily(reader) == Counter(b.counts)
        assert reader.applied_buckets([T0]) == {T0}
        assert reader.query("SELECT COUNT(*) FROM rollup_slices") == [(0,)]


def test_while_live_windows_run_late_slices_get_only_a_trickle(sqlite_url):
    """On a small machine the slices' CPU comes out of the stream's: a live dataflow behind real time catches up
    first; history being replayed (no one waits for its windows) keeps the full share."""
    partition = _StorePartition(sqlite_url, 48 * 3600, 400)

    def share_after_window(seconds_ago: int) -> float:
        start = int(time.time()) - seconds_ago
        partition.write_batch([Flush([WindowRow(start, 1, 1, {"US": 1}, [("numpy", 1)])], [], stats())])
        return partition._slice_share()

    assert share_after_window(0) == partition.SLICE_SHARE  # on time
    assert share_after_window(6) == partition.SLICE_SHARE_BEHIND < partition.SLICE_SHARE  # live, 5 s behind
    assert share_after_window(3600) == partition.SLICE_SHARE  # replaying history
    assert share_after_window(0) == partition.SLICE_SHARE  # caught up again
    partition.close()


def test_a_dataflow_blocks_totals_go_in_with_its_minutes_and_match_its_rows(sqlite_url):
    """The dataflow's blocks hand the sink their all-project totals grouped in numpy (`BlockRows.totals`): they go
    into `daily_totals` in the transaction that records the block's minutes, so between slices the totals hold
    nothing of the block (a reader adding the windows of the minutes not applied counts each download once), and
    then exactly the sum of its `daily` rows, None categories too."""
    from pypi_pulse.dataflow.clock import MinuteRollup
    from pypi_pulse.dataflow.parse import parse_batch
    from pypi_pulse.dataflow.source import RawBatch
    from pypi_pulse.producer.synthetic import SyntheticSource

    events = [v for v, _ in SyntheticSource(seed=3).encoded([T0 + i / 100 for i in range(6000)])]
    minutes: dict = {}
    for minute, cols in parse_batch(RawBatch(0, 1, events, 0, True)).minutes.items():
        minutes.setdefault(minute, MinuteRollup()).add(cols)
    counts = MinuteRollup.merged_final([minutes[m] for m in sorted(minutes)], DAY)
    assert hasattr(counts, "totals") and len(counts) > 2000
    assert any(cat is None for (_d, _p, _dim, cat) in counts)
    with open_sink(sqlite_url) as sink:
        sink.SLICE_ROWS = 700
        slices = 0
        for _ in sink.apply_in_slices(RollupBucket(T0, counts, span=600)):
            slices += 1
            applied = sink.applied_buckets([T0]) == {T0}
            assert stored_totals(sink) == (totals_of(stored_daily(sink)) if applied else Counter())
        assert slices == len(counts) // 700 + 2  # every slice, then the block's record
        assert stored_daily(sink) == Counter(dict(counts))
        assert stored_totals(sink) == totals_of(dict(counts))


def test_at_end_of_input_a_block_goes_in_whole_before_the_write_returns(sqlite_url):
    """Nothing waits for a window any more: the block is written in one transaction, not slice by slice."""
    b = block()
    partition = _StorePartition(sqlite_url, 48 * 3600, 400)
    partition.slice_time.credit_s = -10.0  # the live share is spent: a block sealed now waits for credit
    partition.write_batch([Flush([], [b], stats())])
    with open_sink(sqlite_url, readonly=True) as reader:
        assert reader.applied_buckets([T0]) == set()
        partition.write_batch([Flush([], [b], stats(), final=True)])  # the clock's flush at end of input
        assert reader.applied_buckets([T0]) == {T0}
        assert stored_daily(reader) == Counter(b.counts)
    partition.close()
