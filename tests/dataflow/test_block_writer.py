"""Sealed rollup blocks applied by a writer process of their own: counted exactly once, windows written meanwhile,
and a writer that dies stops the dataflow instead of losing blocks quietly."""

from __future__ import annotations

from collections import Counter

import pytest
from expected_rollups import stored_daily, stored_totals, totals_of

from pypi_pulse.dataflow import block_writer
from pypi_pulse.dataflow.block_writer import BlockWriterDied
from pypi_pulse.dataflow.clock import Flush
from pypi_pulse.dataflow.outputs import _StorePartition
from pypi_pulse.metrics import dataflow_metrics
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow

T0 = 1795219200  # 2026-11-21T00:00:00Z, a block boundary
DAY = "2026-11-21"


def block(n_projects: int, start: int = T0) -> RollupBucket:
    counts = {}
    for i in range(n_projects):
        p = f"project-{i:05d}"
        counts[(DAY, p, "overall", None)] = i + 1
        counts[(DAY, p, "country", "US")] = i + 2
        counts[(DAY, p, "installer", None if i % 3 else "pip")] = 1
    return RollupBucket(start, counts, span=600)


def stats() -> PipelineStats:
    return PipelineStats({"consumed": 1}, {0: 1}, None, 0.0)


def window(start: int) -> WindowRow:
    return WindowRow(start, 5, 1, {"US": 5}, [("numpy", 5)])


def test_a_block_goes_in_through_the_writer_once_while_windows_keep_reaching_the_sink(sqlite_url):
    b = block(40_000)  # 120,000 rows: 24 slices of the writer's, seconds of work
    partition = _StorePartition(sqlite_url, 48 * 3600, 400, block_writer=True)
    try:
        partition.write_batch([Flush([window(T0 + 899)], [], stats())])  # the first write starts the writer
        handed_over = []
        submit = partition.writer.submit
        partition.writer.submit = lambda bucket: handed_over.append(bucket.bucket) or submit(bucket)
        partition.write_batch([Flush([window(T0 + 900)], [b], stats())])
        with open_sink(sqlite_url, readonly=True) as reader:
            assert [w.start for w in reader.latest_windows(5)] == [T0 + 899, T0 + 900]  # not held up by the block
            assert reader.applied_buckets([T0]) == set()  # the block is still going in, in the other process
            assert dataflow_metrics.ROLLUP_PENDING._value.get() == 1  # what operators see
            partition.write_batch([Flush([window(T0 + 901)], [b], stats())])  # sent again by the clock
            assert [w.start for w in reader.latest_windows(5)] == [T0 + 899, T0 + 900, T0 + 901]
            assert handed_over == [T0]  # handed over once
            partition.close()  # end of input: waits until the writer has applied it
            assert stored_daily(reader) == Counter(b.counts)
            assert stored_totals(reader) == totals_of(b.counts)
            assert reader.applied_buckets([T0]) == {T0}
            assert reader.query("SELECT COUNT(*) FROM rollup_slices") == [(0,)]
        assert not partition.writer.proc.is_alive()
        assert dataflow_metrics.ROLLUP_PENDING._value.get() == 0
    finally:
        if partition.writer is not None and partition.writer.proc.is_alive():
            partition.writer.proc.kill()


def test_every_backend_takes_blocks_from_the_writer_process(sink_url):
    """SQLite shares one write lock between the dataflow and the writer; PostgreSQL writes from both at once."""
    blocks = [block(300), block(200, T0 + 600)]
    partition = _StorePartition(sink_url, 48 * 3600, 400, block_writer=True)
    partition.write_batch([Flush([window(T0 + 1200)], blocks, stats())])
    partition.write_batch([Flush([window(T0 + 1201)], blocks[1:], stats())])
    partition.close()
    with open_sink(sink_url, readonly=True) as reader:
        assert stored_daily(reader) == Counter(blocks[0].counts) + Counter(blocks[1].counts)
        assert reader.applied_buckets([T0, T0 + 600]) == {T0, T0 + 600}
        assert len(reader.latest_windows(5)) == 2


def test_a_writer_that_died_stops_the_dataflow_with_a_clear_error(sqlite_url):
    partition = _StorePartition(sqlite_url, 48 * 3600, 400, block_writer=True)
    partition.write_batch([Flush([window(T0 + 900)], [], stats())])  # starts the writer
    partition.writer.proc.kill()
    partition.writer.proc.join(10)
    with pytest.raises(BlockWriterDied, match="exited with code -9"):
        partition.write_batch([Flush([window(T0 + 901)], [block(10)], stats())])
    with open_sink(sqlite_url, readonly=True) as reader:
        assert reader.applied_buckets([T0]) == set()  # not applied, and not marked: re-sent after a restart


def test_a_block_that_cannot_be_applied_stops_the_dataflow_with_the_reason_from_the_process_that_tried(sqlite_url):
    """Each block is merged and applied in a process forked for it (its memory leaves with it): what goes wrong
    there still reaches the dataflow, with the traceback, and nothing of the block is counted."""
    b = block(10)
    with open_sink(sqlite_url) as db:
        db.write([], [RollupBucket(T0 + 60, {(DAY, "numpy", "overall", None): 1})], None)  # one of its minutes
    partition = _StorePartition(sqlite_url, 48 * 3600, 400, block_writer=True)
    partition.write_batch([Flush([window(T0 + 900)], [b], stats())])
    with pytest.raises(BlockWriterDied, match="(?s)failed applying block 1795219200.*refusing to count them twice"):
        partition.writer.close(timeout_s=30)
    with open_sink(sqlite_url, readonly=True) as reader:
        assert reader.applied_buckets([T0]) == set()
        assert stored_daily(reader) == Counter({(DAY, "numpy", "overall", None): 1})


def test_the_writer_steps_back_while_live_windows_are_late():
    assert block_writer._share(0.3) == block_writer.SHARE < 1  # live and on time: leaves the stream its core
    assert block_writer._share(5.0) == block_writer.SHARE_BEHIND < block_writer.SHARE  # live and late
    assert block_writer._share(3600.0) == 1.0  # history being replayed: no one waits for its windows
    assert block_writer._share(-1.0) == 1.0  # the end of input


def test_a_live_dataflow_starts_its_writer_at_once_and_a_batch_run_with_its_first_block(tmp_path, monkeypatch):
    """A batch run of a short export seals everything at its end and never needs the process."""
    from pypi_pulse.assembly import flow_config
    from pypi_pulse.config import Settings

    s = Settings(data_dir=tmp_path)
    live = flow_config(s, "localhost:9092", 4, live=True)
    assert live.block_writer and not live.lazy_block_writer
    batch = flow_config(s, "localhost:9092", 4)
    assert batch.block_writer and batch.lazy_block_writer
    monkeypatch.setenv("PYPI_PULSE_BLOCK_WRITER", "false")
    assert not flow_config(Settings(data_dir=tmp_path), "localhost:9092", 4, live=True).block_writer


def test_a_batch_run_hands_over_blocks_sealed_while_it_streams_and_writes_the_last_ones_whole(sqlite_url):
    early, last = block(3_000), block(2_000, T0 + 600)
    partition = _StorePartition(sqlite_url, 48 * 3600, 400, block_writer=True, lazy_block_writer=True)
    try:
        partition.write_batch([Flush([window(T0 + 1)], [], stats())])
        assert partition.writer is None  # nothing sealed yet: no process
        partition.write_batch([Flush([window(T0 + 2)], [early], stats())])
        writer = partition.writer
        assert writer is not None and writer.knows(T0)
        end = Flush([window(T0 + 3)], [early, last], stats())  # the clock may send a block again
        end.final = True
        partition.write_batch([end])  # the writer finishes its block; the last one goes in here, in one go
        assert partition.writer is None and not writer.proc.is_alive()
        partition.close()
        with open_sink(sqlite_url, readonly=True) as reader:
            assert stored_daily(reader) == Counter(early.counts) + Counter(last.counts)  # each exactly once
            assert reader.applied_buckets([T0, T0 + 600]) == {T0, T0 + 600}
            assert len(reader.latest_windows(5)) == 3
    finally:
        if partition.writer is not None and partition.writer.proc.is_alive():
            partition.writer.proc.kill()


@pytest.mark.parametrize("merged_by", ["clock", "writer"])
def test_a_dataflow_block_reaches_the_writer_through_a_file_and_goes_in_exactly(sqlite_url, merged_by):
    """The clock's blocks are handed over through a file: merged (`BlockRows`, narrowed numpy columns), or, live,
    unmerged (`SealedBlock`, the minutes' packed bytes, merged by the writer). Every row and total arrives, None
    categories too, and the file is gone once the writer has read it. An unmerged block still in the dataflow at
    the end of input is merged there and written inline."""
    from pypi_pulse.dataflow.clock import MinuteRollup, SealedBlock
    from pypi_pulse.dataflow.parse import parse_batch
    from pypi_pulse.dataflow.source import RawBatch
    from pypi_pulse.producer.synthetic import SyntheticSource

    def minutes_of(start: int) -> list:
        events = [v for v, _ in SyntheticSource(seed=5).encoded([start + i / 10 for i in range(6000)])]
        minutes: dict = {}
        for minute, cols in parse_batch(RawBatch(0, 1, events, 0, True)).minutes.items():
            minutes.setdefault(minute, MinuteRollup()).add(cols)
        return [minutes[m] for m in sorted(minutes)]

    first, last = minutes_of(T0), minutes_of(T0 + 600)
    counts = MinuteRollup.merged_final(first, DAY)
    expected = Counter(dict(counts)) + Counter(dict(MinuteRollup.merged_final(last, DAY)))
    assert hasattr(counts, "totals") and any(cat is None for (_d, _p, _dim, cat) in counts)
    handed = counts if merged_by == "clock" else SealedBlock(first, DAY)
    partition = _StorePartition(sqlite_url, 48 * 3600, 400, block_writer=True)
    partition.write_batch([Flush([window(T0 + 900)], [RollupBucket(T0, handed, span=600)], stats())])
    spool = partition.writer.spool
    assert [p.suffix for p in spool.iterdir()] in ([], [".columns" if merged_by == "clock" else ".minutes"])
    partition.write_batch(
        [Flush([window(T0 + 1300)], [RollupBucket(T0 + 600, SealedBlock(last, DAY), span=600)], stats(), final=True)]
    )
    partition.close()
    with open_sink(sqlite_url, readonly=True) as reader:
        assert stored_daily(reader) == expected
        assert stored_totals(reader) == totals_of(expected)
        assert reader.applied_buckets([T0, T0 + 600]) == {T0, T0 + 600}
    assert not spool.exists()
