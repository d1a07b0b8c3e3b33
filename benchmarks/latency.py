"""Benchmark 2: end-to-end latency of a live stream, from the end of a 1-second window (wall clock) to its row being
readable in the SQLite sink, over the run and while each sealed rollup block goes into the history.

    python3 benchmarks/latency.py                 # 120 s at 20,000 events/s
    python3 benchmarks/latency.py --seconds 900 --rate 66000 --recovery --lateness 60 --align

The real producer (`pypi-pulse produce --source synthetic`, PyPI's shape: the top 15,000 projects at their real
weights and a long tail, events stamped now) and the real `pypi-pulse dataflow` (as `up` runs it) run in their own
processes on the embedded broker; this script polls the sink every 50 ms and the history every second
(benchmarks/_live.py). It reports p50/p99/max of `written_at - window end` and of the moment this poller first read
each row, over the run (the first 10 s and the last 2 s left out) and for the windows that ended while each sealed
block was being merged and written (from the moment it could seal, its end plus the lateness horizon, to its last
shard's file, plus 5 s), the distinct projects a window held, the cores each process used and the dataflow's RSS
per block cycle. `--align` waits for the phase of the 10-minute blocks at which the run holds a whole block sealed
and written (a 15-minute run starts between hh:m7:30 and hh:m9:30).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import _live as L  # noqa: E402


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
        "--align",
        action="store_true",
        help="wait for the phase of the 10-minute blocks at which the run holds a whole block, sealed and written",
    )
    ap.add_argument("--target", type=float, default=1.0, help="the p99 target in seconds (issue 23: 1.0)")
    ap.add_argument(
        "--keep-dataflow-log",
        type=Path,
        metavar="FILE",
        help="copy the dataflow's log, at INFO (blocks handed over and applied, merges), to FILE",
    )
    ap.add_argument(
        "--max-rss-gib",
        type=float,
        default=10.0,
        help="stop the run early when its processes together pass this RSS (the machine is shared)",
    )
    args = ap.parse_args()
    C.print_machine()
    print(L.load_line("at start"), flush=True)
    phase = L.start_phase(args.seconds, 1, args.lateness) if args.align else None

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    sampler = C.RssSampler(every_s=1.0).start()
    try:
        r = L.live_run(
            args.rate,
            args.seconds,
            work,
            sampler,
            epoch_s=args.epoch,
            recovery=args.recovery,
            lateness_s=args.lateness,
            pack_events=args.pack_events,
            flow_log_level="info" if args.keep_dataflow_log else "warning",
            phase=phase,
            max_rss=args.max_rss_gib * 2**30,
        )
    finally:
        sampler.stop()
        if args.keep_dataflow_log and (work / "dataflow.log").exists():
            shutil.copyfile(work / "dataflow.log", args.keep_dataflow_log)
        shutil.rmtree(work, ignore_errors=True)
    print("\n== results ==")
    if r["aborted"]:
        print(f"RUN CUT SHORT, {r['aborted']}")
    print(L.load_line("at end"))
    started = datetime.fromtimestamp(r["started"], UTC)
    print(
        f"rate {args.rate:,.0f} events/s for {r['seconds']:.0f} s from {started:%Y-%m-%d %H:%M:%S} UTC; "
        f"{r['windows']} of {r['windows_due']} steady windows written, median {r['events_per_window']:,.0f} events "
        f"per window"
    )
    d = r["distinct_per_window"]
    if d:
        print(
            f"distinct projects a window: median {C.percentile(d, 0.5):,}, p10 {C.percentile(d, 0.1):,}, "
            f"p90 {C.percentile(d, 0.9):,}"
        )
    for name, key in (
        ("window end -> row written (written_at)", "write_delay"),
        ("window end -> row read by poller", "seen_delay"),
    ):
        print(f"{name}: {L.spread(r[key], 'no windows')}")
    during_all: list[float] = []
    in_blocks: set[int] = set()  # windows that ended while a block went in
    whole_blocks = 0
    for b in r["blocks"]:
        seal = b["start"] + b["span"] + args.lateness
        until = b["last_written"] + L.AFTER_WRITE_S
        during = sorted(d for w, d in r["seen_by_window"].items() if seal <= w + 1 <= until)
        during_all += during
        in_blocks.update(w for w in r["seen_by_window"] if seal <= w + 1 <= until)
        covered = b["start"] >= r["started"]  # the run's events fill the block from its start
        whole = covered and b["files"] == b["of"]
        whole_blocks += whole
        print(
            f"block {datetime.fromtimestamp(b['start'], UTC):%H:%M:%S} + {b['span']} s "
            f"({'all of it in the run' if covered else 'the run started inside it'}), {b['files']} of {b['of']} "
            f"shard files written: could seal at "
            f"{seal - r['started']:.0f} s into the run, files written {b['first_written'] - seal:.1f} to "
            f"{b['last_written'] - seal:.1f} s after; the {len(during)} windows meanwhile: {L.spread(during)}; "
            f"cores meanwhile {cores(sampler, seal, b['last_written'])}, "
            f"in the minute before {cores(sampler, seal - 60, seal)}"
        )
        print(late_windows(r["seen_by_window"], seal, until, args.target))
    between = sorted(d for w, d in r["seen_by_window"].items() if w not in in_blocks)
    print(f"the {len(between)} windows while no block went in: {L.spread(between)}")
    for s in missing_blocks(r, args.lateness):
        print(f"block ending {datetime.fromtimestamp(s + L.block_s(), UTC):%H:%M} could seal within the run: no file")
    print(f"cores used over the run: {cores(sampler, r['started'], r['ended'])}")
    print(L.cpu_per_event_line(sampler, r, args.rate))
    L.print_block_cycles(sampler, "dataflow", args.lateness, since=r["started"])
    print(f"dataflow peak RSS {C.mib(sampler.peak.get('dataflow', 0))}, broker {C.mib(sampler.peak.get('broker', 0))}")
    p99 = C.percentile(r["seen_delay"], 0.99)
    p99_blocks = C.percentile(sorted(during_all), 0.99)
    ok_run = bool(r["seen_delay"]) and p99 < args.target and r["windows"] == r["windows_due"]
    ok_blocks = whole_blocks > 0 and bool(during_all) and p99_blocks < args.target
    print(
        f"target p99 < {args.target:.1f} s over the run: {'met' if ok_run else 'NOT met'} (p99 {p99:.3f} s, "
        f"{r['windows_due'] - r['windows']} steady windows missing); while sealed blocks go in: "
        f"{'met' if ok_blocks else 'NOT met'} (p99 {p99_blocks:.3f} s over {len(during_all)} windows, "
        f"{whole_blocks} whole block(s) written)"
    )
    return 0


def missing_blocks(r: dict, lateness_s: float) -> list[int]:
    """Starts of the blocks with events that could seal at least 30 s before the run ended but have no file."""
    b = L.block_s()
    out = []
    for s in range(math.floor(r["started"] / b) * b, int(r["ended"]), b):
        sealed_in_time = s + b + lateness_s + 30 <= r["ended"]
        if sealed_in_time and not any(x["start"] < s + b and s < x["start"] + x["span"] for x in r["blocks"]):
            out.append(s)
    return out


def late_windows(seen_by_window: dict, seal: float, until: float, over_s: float) -> str:
    """When, after a block could seal, the windows over `over_s` were (which part of its application they met)."""
    late = [(w + 1 - seal, d) for w, d in sorted(seen_by_window.items()) if seal <= w + 1 <= until and d > over_s]
    cells = ", ".join(f"+{t:.0f} s: {d:.2f} s" for t, d in late[:20]) + (" ..." if len(late) > 20 else "")
    return f"  windows over {over_s:.1f} s after the seal: {len(late)}" + (f" ({cells})" if late else "")


def cores(sampler, *window: float) -> str:
    """`RssSampler.cores` over the run, or over a (since, until) wall-clock window, as one line."""
    return ", ".join(f"{name} {n:.2f}" for name, n in sampler.cores(*window).items()) or "not sampled"


if __name__ == "__main__":
    sys.exit(main())
