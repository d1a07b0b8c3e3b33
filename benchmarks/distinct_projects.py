"""How many distinct projects the synthetic source touches in a second at PyPI's average rate (66,000 events/s).

PyPI's real shape (shared/known-facts.md): the top 15,000 projects hold ~77% of downloads, the other ~23% spread over
~585,000 more projects, and a median second at 66,000 events/s holds ~19,000 distinct projects. The number drives
the dataflow's per-second state (unique projects, top 10) and the rollups' row count, so the synthetic source must
have it for benchmarks and demos to mean anything.

    python3 benchmarks/distinct_projects.py                  # 30 seconds of event time, seed 1
    python3 benchmarks/distinct_projects.py --seconds 10 --seed 7

Each second gets exactly `--rate` events (evenly spaced) from `SyntheticSource.encoded`, as the live stream sends
them; it prints the machine, the median (and range) of distinct projects per second, the share of events outside
the top 15,000 and how fast the source generated them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rate", type=int, default=66_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    C.print_machine()
    from pypi_pulse.producer import popularity as pop
    from pypi_pulse.producer.synthetic import SyntheticSource

    top = set(pop.packages().values)
    src = SyntheticSource(args.seed)
    distinct, tail, took = [], 0, 0.0
    for s in range(args.seconds):
        sec = C.T0 + s
        t = time.perf_counter()
        pairs = src.encoded([sec + i / args.rate for i in range(args.rate)])
        took += time.perf_counter() - t
        keys = [k.decode() for _, k in pairs]
        distinct.append(len(set(keys)))
        tail += sum(1 for k in keys if k not in top)
    n = args.seconds * args.rate
    print(
        f"seed {args.seed}, {args.seconds} s at {args.rate:,} events/s: distinct projects per second median "
        f"{median(distinct):,.0f} (min {min(distinct):,}, max {max(distinct):,})"
    )
    print(
        f"events outside the top {len(top):,} projects: {tail / n:.1%} (target {pop.TAIL_SHARE:.0%}, over "
        f"{pop.TAIL_PROJECTS:,} tail projects)"
    )
    print(f"generated {n:,} events in {took:.1f} s ({n / took:,.0f} events/s on one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
