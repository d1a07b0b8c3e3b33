"""The dataflow's closed state: how large one minute of rollups and one 1-second window are once packed (pickled
and zlib-compressed, as `dataflow/clock.py` keeps them for the lateness horizon and copies them into every
recovery snapshot), and what packing costs.

    python3 benchmarks/state_size.py                   # one minute of 1,200,000 events (20,000 events/s)
    python3 benchmarks/state_size.py --events 300000

The events are the synthetic export of benchmark 1 (generated once and cached, 66,000 events per second of event
time), so 1,200,000 of them span about 18 s and fall into one or two rollup minutes: their packed sizes add up to
the state of one minute at 20,000 events/s (1,200,000 events), the density the latency and memory runs use.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_200_000)
    ap.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE)
    args = ap.parse_args()
    C.print_machine()
    from pypi_pulse.dataflow.clock import Clock
    from pypi_pulse.dataflow.parse import parse_batch
    from pypi_pulse.dataflow.partials import BUCKET_S
    from pypi_pulse.dataflow.rollups import pack_bytes
    from pypi_pulse.dataflow.source import RawBatch

    export = C.synthetic_export(max(args.events, 200_000), 66_000, 1, args.cache_dir)
    with open(export, "rb") as f:
        lines = [line.rstrip(b"\n") for line in itertools.islice(f, args.events)]  # as Kafka values
    clock = Clock(lateness_s=600, out_of_order_s=0, idle_s=2)
    t = time.perf_counter()
    for i in range(0, len(lines), 20_000):
        clock.add(parse_batch(RawBatch(0, 1, lines[i : i + 20_000], i, False, wall=1.0)))
    took = time.perf_counter() - t
    print(
        f"counted {len(lines):,} events into the clock in {took:.1f} s ({len(lines) / took:,.0f} events/s, parse included)"
    )
    for minute, rollup in sorted(clock.rollups.items()):
        raw = len(pickle.dumps(rollup._state(), protocol=pickle.HIGHEST_PROTOCOL))
        keys = sum(len(t.keys) for t in rollup.tallies.values())
        print(
            f"rollup minute {minute}: {keys:,} distinct (project, dimension, category) keys, "
            f"{sum(t.keys.nbytes + t.counts.nbytes for t in rollup.tallies.values()) / 2**20:.1f} MiB of arrays"
        )
        rollup.compress = True  # as with recovery on
        t = time.perf_counter()
        rollup.pack()
        pack_s = time.perf_counter() - t
        print(
            f"rollup minute {minute}: pickled {raw / 2**20:.1f} MiB, packed (pickled + zlib) "
            f"{len(rollup.packed) / 2**20:.1f} MiB, packing took {pack_s:.2f} s"
        )
    windows = list(clock.windows.values())
    raw = sum(len(pickle.dumps(w.projects, protocol=pickle.HIGHEST_PROTOCOL)) for w in windows)
    t = time.perf_counter()
    packed = sum(len(pack_bytes(w.projects)) for w in windows)
    print(
        f"{len(windows)} one-second windows: pickled {raw / len(windows) / 1024:.0f} KiB each, packed "
        f"{packed / len(windows) / 1024:.0f} KiB each, packing {1000 * (time.perf_counter() - t) / len(windows):.1f} ms each"
    )
    print(f"(a {BUCKET_S} s rollup minute at {args.events:,} events per minute = {args.events / 60:,.0f} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
