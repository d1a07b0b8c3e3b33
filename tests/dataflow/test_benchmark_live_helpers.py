"""The live benchmarks (benchmarks/latency.py, memory.py) judge issue 23's target by the seconds while a sealed
rollup block goes in and by the dataflow's RSS from block to block: these tests check the parts of
benchmarks/_live.py that decide when a run starts, which blocks it saw written and how its RSS is cut into block
cycles, against figures worked out by hand. They start no broker and no dataflow."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _live as L  # noqa: E402

BLOCK = 600  # the 10-minute rollup blocks


def test_a_fifteen_minute_run_starts_between_m7_30_and_m9_30_to_hold_a_whole_block_written():
    # started at hh:m7:30, the block from hh:m0 + 10 min begins 150 s in, ends at 750 s, can seal at 810 s with
    # --lateness 60 and has 90 s to be written before 900 s; after hh:m9:30 the block would start under 30 s in
    assert L.start_phase(900, 1, 60) == (450, 570)


def test_a_run_too_short_for_the_blocks_asked_for_says_how_long_it_must_be():
    with pytest.raises(SystemExit, match="--seconds 780 or more"):
        L.start_phase(700, 1, 60)  # 600 s of block, 60 of lateness, 90 to write it and 30 of lead


def test_whole_blocks_a_run_can_hold():
    assert L.whole_blocks_in(24 * 60, 60) == 2
    assert L.whole_blocks_in(42 * 60, 60) == 3
    assert L.whole_blocks_in(15 * 60, 60) == 1
    assert L.whole_blocks_in(10 * 60, 60) == 0


class _Sampler:
    """What block_cycles reads of benchmarks/_common.RssSampler: the wall clock of its start and the series."""

    def __init__(self, started_wall: float, series: list[tuple[float, int]]):
        self.started_wall = started_wall
        self.series = {"dataflow": series}


def test_rss_is_cut_into_cycles_from_one_seal_to_the_next():
    lateness = 60
    t0 = 100 * BLOCK + 300  # the run starts 5 minutes into a block
    mib = 2**20
    series = []
    for t in range(0, 30 * 60):  # 30 minutes, a sample a second
        since_seal = (t0 + t - lateness) % BLOCK  # the state grows through a cycle and drops at each seal
        cycle = (t0 + t - lateness) // BLOCK
        series.append((float(t), (100 + since_seal + 7 * cycle) * mib))  # 7 MiB more every cycle: growth
    cycles = L.block_cycles(_Sampler(t0, series), "dataflow", lateness)
    seals = [100 * BLOCK + lateness + k * BLOCK for k in range(4)]  # at 60 s past each boundary
    assert [(c["from"], c["to"]) for c in cycles] == list(zip(seals, seals[1:] + [seals[-1] + BLOCK]))
    assert [c["whole"] for c in cycles] == [False, True, True, False]
    whole = [c for c in cycles if c["whole"]]
    assert whole[1]["peak"] - whole[0]["peak"] == 7 * mib
    assert whole[0]["peak"] == (100 + BLOCK - 1 + 7 * 101) * mib
    assert whole[0]["block_end"] == 102 * BLOCK  # the block this cycle gathers, sealed at its end + lateness


def test_block_files_group_each_blocks_shard_files_with_when_they_were_written(tmp_path):
    from pypi_pulse.sink.history import History

    history = History(tmp_path / "history")
    rows = pa.table(
        {"project": ["a"], "dimension": ["overall"], "category": [None], "downloads": [3]},
    )
    start = 100 * BLOCK
    for shard in range(8):
        history.write_block(start, BLOCK, rows, (shard, 8))
    for shard in range(3):  # the next block, still going in
        history.write_block(start + BLOCK, BLOCK, rows, (shard, 8))
    files = L.BlockFiles(tmp_path / "history")
    files.poll()
    blocks = files.blocks()
    assert [(b["start"], b["span"], b["files"], b["of"]) for b in blocks] == [
        (start, BLOCK, 8, 8),
        (start + BLOCK, BLOCK, 3, 8),
    ]
    assert blocks[0]["first_written"] <= blocks[0]["last_written"] <= blocks[1]["first_written"]


def test_samples_taken_while_the_run_waited_to_start_are_left_out_of_the_cycles():
    lateness = 60
    sampled_from = 100 * BLOCK  # the sampler starts while the run waits for its phase
    producer_start = 100 * BLOCK + 120  # after the seal at +60: the cycle from that seal is not whole
    series = [(float(t), (50 if t < 120 else 500) * 2**20) for t in range(0, 15 * 60)]
    cycles = L.block_cycles(_Sampler(sampled_from, series), "dataflow", lateness, since=producer_start)
    assert [c["whole"] for c in cycles] == [False, False]
    assert all(c["peak"] == 500 * 2**20 for c in cycles)
    assert cycles[0]["from"] == 100 * BLOCK + lateness
