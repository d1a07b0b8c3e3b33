"""Benchmark 2: end-to-end latency at a steady 20,000 events/s, from the end of a 1-second window (wall clock) to
its row being readable in the SQLite sink.

    python3 benchmarks/latency.py                 # 120 s at 20,000 events/s
    python3 benchmarks/latency.py --seconds 600 --rate 20000

The real producer (`pypi-pulse produce --source synthetic`, events stamped with the current time) and the real
dataflow run in their own processes on the embedded broker; this script polls the sink every 50 ms. It reports
p50/p99/max of `written_at - window end` (when the sink committed the row) and of the moment this poller first
read it. The first 10 s (warm-up) and the last 2 s (the producer stopping) are left out.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def spread(sorted_delays: list[float], empty: str = "none") -> str:
    if not sorted_delays:
        return empty
    return (
        f"p50 {C.percentile(sorted_delays, 0.5):.3f} s, p99 {C.percentile(sorted_delays, 0.99):.3f} s, "
        f"max {sorted_delays[-1]:.3f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--epoch", type=float, default=10.0, help="Bytewax epoch (snapshot) interval, as `--epoch-seconds`")
    ap.add_argument("--recovery", action="store_true", help="run the dataflow with a recovery store (as `up` does)")
    ap.add_argument(
        "--pack-events",
        type=int,
        default=1000,
        help="events per Kafka message, as `up` on the embedded broker (1: one per message)",
    )
    ap.add_argument(
        "--lateness",
        type=float,
        default=600.0,
        help="lateness horizon in seconds (as `--lateness-seconds`); a shorter one seals rollup blocks sooner",
    )
    ap.add_argument(
        "--keep-dataflow-log",
        type=Path,
        metavar="FILE",
        help="copy the dataflow's log, at INFO (blocks handed over and applied, merges), to FILE",
    )
    args = ap.parse_args()
    C.print_machine()
    from pypi_pulse.dataflow.clock import BLOCK_S

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    sampler = C.RssSampler(every_s=1.0).start()
    try:
        r = C.live_run(
            args.rate,
            args.seconds,
            work,
            sampler,
            epoch_s=args.epoch,
            recovery=args.recovery,
            lateness_s=args.lateness,
            pack_events=args.pack_events,
            flow_log_level="INFO" if args.keep_dataflow_log else "WARNING",
        )
    finally:
        sampler.stop()
        if args.keep_dataflow_log and (work / "dataflow.log").exists():
            shutil.copyfile(work / "dataflow.log", args.keep_dataflow_log)
        shutil.rmtree(work, ignore_errors=True)
    print("\n== results ==")
    print(
        f"rate {args.rate:,.0f} events/s for {r['seconds']:.0f} s; {r['windows']} steady windows, "
        f"median {r['events_per_window']:,.0f} events per window; {r['rollup_minutes_applied']} rollup minutes applied "
        f"(sealed blocks)"
    )
    for name, key in (
        ("window end -> row written (written_at)", "write_delay"),
        ("window end -> row read by poller", "seen_delay"),
    ):
        print(f"{name}: {spread(r[key], 'no windows')}")
    for first, end, applied_at in r["blocks"]:
        # from the moment the block could seal (its end plus the lateness horizon) to its last slice's commit
        during = sorted(d for w, d in r["seen_by_window"].items() if end + args.lateness <= w + 1 <= applied_at)
        print(
            f"block of {(end - first) // 60} minute(s) sealed at ~{end + args.lateness - r['started']:.0f} s, "
            f"applied {applied_at - end - args.lateness:.0f} s later; the {len(during)} windows meanwhile: "
            f"{spread(during)}; cores meanwhile {cores(sampler, end + args.lateness, applied_at)}, "
            f"in the minute before {cores(sampler, end + args.lateness - 60, end + args.lateness)}"
        )
        print(late_windows(r["seen_by_window"], end + args.lateness, applied_at))
    for first, n_slices, last_at in r["blocks_in_progress"]:
        end = first + BLOCK_S  # a block being applied in slices is a whole block
        during = sorted(d for w, d in r["seen_by_window"].items() if end + args.lateness <= w + 1)
        print(
            f"block from {first - r['started']:.0f} s still going in at the end: {n_slices} slices applied, the last "
            f"{last_at - end - args.lateness:.0f} s after it could seal; the {len(during)} windows since it could seal: "
            f"{spread(during)}"
        )
        print(late_windows(r["seen_by_window"], end + args.lateness, math.inf))
    print(f"cores used over the run: {cores(sampler)}")
    ok = bool(r["seen_delay"]) and C.percentile(r["seen_delay"], 0.99) < 1.5
    print(f"target p99 < 1.5 s: {'met' if ok else 'NOT met'}")
    return 0


def late_windows(seen_by_window: dict, seal: float, until: float, over_s: float = 1.0) -> str:
    """When, after a block could seal, the windows over `over_s` were (which part of its application they met)."""
    late = [(w + 1 - seal, d) for w, d in sorted(seen_by_window.items()) if seal <= w + 1 <= until and d > over_s]
    cells = ", ".join(f"+{t:.0f} s: {d:.2f} s" for t, d in late[:20]) + (" ..." if len(late) > 20 else "")
    return f"  windows over {over_s:.1f} s after the seal: {len(late)}" + (f" ({cells})" if late else "")


def cores(sampler, *window: float) -> str:
    """`RssSampler.cores` over the run, or over a (since, until) wall-clock window, as one line."""
    return ", ".join(f"{name} {n:.2f}" for name, n in sampler.cores(*window).items()) or "not sampled"


if __name__ == "__main__":
    sys.exit(main())
