"""What one sealed 10-minute rollup block costs the sink at a steady event rate: how many daily rows it holds, how
long the SQLite sink takes to apply it, and how long its longest slice takes. A live dataflow applies a block a
slice at a time between its window writes (`Sink.apply_in_slices`), so the longest slice is about the most a
window waits for rollups.

    python3 benchmarks/block_write.py                     # 20,000 events/s: 12,000,000 synthetic events a block
    python3 benchmarks/block_write.py --rate 5000 --blocks 3

The synthetic events (the realistic generator the producer uses) are parsed and counted by the dataflow's own code
(`parse_batch`, `MinuteRollup`), then each block is written to a fresh SQLite sink, one after the other: the first
into an empty day (inserts), the next ones into the same day (mostly updates of existing rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20_000, help="events per second of event time")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    C.print_machine()
    import psutil

    from pypi_pulse.dataflow.clock import BLOCK_S, MinuteRollup
    from pypi_pulse.dataflow.parse import BUCKET_S, day_of, parse_batch
    from pypi_pulse.dataflow.source import RawBatch
    from pypi_pulse.producer.synthetic import SyntheticSource
    from pypi_pulse.sink.base import open_sink
    from pypi_pulse.sink.model import RollupBucket

    proc = psutil.Process()
    src = SyntheticSource(seed=args.seed)
    t0 = 1795219200  # 2026-11-21 00:00:00 UTC, a block boundary
    per_block = int(args.rate * BLOCK_S)
    step = 50_000
    with tempfile.TemporaryDirectory() as tmp, open_sink(f"sqlite:///{tmp}/sink.db") as sink:
        for b in range(args.blocks):
            start = t0 + b * BLOCK_S
            minutes: dict[int, MinuteRollup] = {}
            counts = None  # the previous block's rows: gone before this one is counted
            t = time.perf_counter()
            with Progress(transient=True) as progress:
                task = progress.add_task(f"block {b + 1}: generating and counting", total=per_block)
                for i in range(0, per_block, step):
                    k = min(step, per_block - i)
                    ts = [start + BLOCK_S * (i + j) / per_block for j in range(k)]
                    part = parse_batch(RawBatch(0, 1, [v for v, _ in src.encoded(ts)], 0, True))
                    for minute, cols in part.minutes.items():
                        minutes.setdefault(minute, MinuteRollup()).add(cols)
                    progress.advance(task, k)
            counted_s = time.perf_counter() - t
            rss_counted = proc.memory_info().rss
            t = time.perf_counter()
            counts = MinuteRollup.merged_final([minutes[m] for m in sorted(minutes)], day_of(start))
            merge_s = time.perf_counter() - t
            rss_merged = proc.memory_info().rss
            slices = []
            t = s0 = time.perf_counter()
            for _ in sink.apply_in_slices(RollupBucket(start, counts, span=BLOCK_S)):  # yields after each slice
                slices.append(time.perf_counter() - s0)
                s0 = time.perf_counter()
            write_s = time.perf_counter() - t
            print(
                f"block {b + 1}: {per_block:,} events ({len(minutes)} minutes of {BUCKET_S} s), {len(counts):,} daily rows; "
                f"generated and counted in {counted_s:.1f} s, merged in {merge_s:.2f} s; "
                f"applied by the SQLite sink in {write_s:.2f} s ({len(counts) / write_s:,.0f} rows/s) in {len(slices)} "
                f"slices: median {median(slices):.3f} s, longest {max(slices):.3f} s; RSS with the block's minutes "
                f"counted {C.mib(rss_counted)}, with its rows merged {C.mib(rss_merged)}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
