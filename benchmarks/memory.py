"""Benchmark 5: memory. Peak RSS of each process during benchmark 1, and the dataflow's RSS over a steady run at
20,000 events/s (default 10 minutes), showing whether it grows.

    python3 benchmarks/memory.py                        # benchmark 1 (1 run, 1 worker) + 10 minutes at 20,000/s
    python3 benchmarks/memory.py --minutes 3 --skip-throughput
    python3 benchmarks/memory.py --skip-throughput --recovery   # the steady run with a recovery store, as `up`

The steady run is the live setup of benchmark 2 (benchmarks/_live.py: the real producer and `pypi-pulse dataflow`
as `up` runs it, embedded broker, SQLite sink and Parquet history), sampled every second with psutil; the dataflow
is all of its processes. "Growth" compares the median RSS of the last minute with that of the minute after the
warm-up; that includes the rollup block filling up (a block gathers every key of its 10 minutes until it is sealed),
so the run also reports each block cycle (seal to seal): its peak, and the RSS just before its seal, when the block
is whole. A state that does not grow has the same figures in every whole cycle. `--align` waits for the phase at
which the run holds the most whole blocks (`--lateness 60 --minutes 24 --align`: two).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import _live as L  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--events", type=int, default=2_000_000, help="events of the benchmark 1 run")
    ap.add_argument("--skip-throughput", action="store_true", help="only the steady run")
    ap.add_argument(
        "--recovery", action="store_true", help="the steady run's dataflow keeps a recovery store, as `up` does"
    )
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
        help="lateness horizon in seconds: the window state it holds fills for this long",
    )
    ap.add_argument(
        "--align",
        action="store_true",
        help="wait for the phase of the 10-minute blocks at which the run holds the most whole blocks",
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
    peaks = []
    if not args.skip_throughput:
        print(f"benchmark 1 ({args.events:,} events, 1 worker, 1 run) ...", flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                str(C.HERE / "dataflow_throughput.py"),
                "--events",
                str(args.events),
                "--workers",
                "1",
                "--runs",
                "1",
            ],
            capture_output=True,
            text=True,
        )
        peaks = [line for line in proc.stdout.splitlines() if line.startswith("peak RSS")]
        if proc.returncode != 0 or not peaks:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 1
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    phase = None
    if args.align:
        whole = L.whole_blocks_in(args.minutes * 60, args.lateness)
        if whole < 1:
            raise SystemExit(f"{args.minutes:g} minutes hold no whole block sealed and written: pass more --minutes")
        phase = L.start_phase(args.minutes * 60, whole, args.lateness)
        print(f"aligned for {whole} whole block(s)", flush=True)
    sampler = C.RssSampler(every_s=1.0).start()
    try:
        r = L.live_run(
            args.rate,
            args.minutes * 60,
            work,
            sampler,
            report_every_s=60,
            recovery=args.recovery,
            lateness_s=args.lateness,
            pack_events=args.pack_events,
            phase=phase,
            max_rss=args.max_rss_gib * 2**30,
        )
    finally:
        sampler.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n== results ==")
    if r["aborted"]:
        print(f"RUN CUT SHORT, {r['aborted']}")
    print(L.load_line("at end"))
    for line in peaks:
        print("benchmark 1: " + line)
    print(
        f"steady run: {args.rate:,.0f} events/s for {r['seconds'] / 60:.1f} min from "
        f"{datetime.fromtimestamp(r['started'], UTC):%Y-%m-%d %H:%M:%S} UTC (median {r['events_per_window']:,.0f} "
        f"events per 1-s window, {C.percentile(r['distinct_per_window'], 0.5):,} distinct projects); "
        f"{len(r['blocks'])} blocks written: "
        + ", ".join(
            f"{datetime.fromtimestamp(b['start'], UTC):%H:%M}+{b['span']}s ({b['files']}/{b['of']} files)"
            for b in r["blocks"]
        )
    )
    t0 = r["started"] - sampler.started_wall  # the samples taken while the run waited to start are left out
    for name, whole_series in sampler.series.items():
        series = [(t - t0, v) for t, v in whole_series if t >= t0]
        if not series:
            continue
        end = series[-1][0]
        first = [v for t, v in series if 60 <= t < 120] or [v for _, v in series[: len(series) // 2]]
        last = [v for t, v in series if t >= end - 60]
        per_min = []
        for m in range(int(end // 60) + 1):
            vals = [v for t, v in series if m * 60 <= t < (m + 1) * 60]
            if vals:
                per_min.append(C.mib(max(vals)).replace(" MiB", ""))
        print(
            f"{name}: peak {C.mib(max(v for _, v in series))}, minute 2 median {C.mib(median(first))}, "
            f"last minute median {C.mib(median(last))} (growth {(median(last) - median(first)) / 2**20:+,.0f} MiB); "
            f"per-minute peaks MiB: {' '.join(per_min)}"
        )
    print(L.cpu_per_event_line(sampler, r, args.rate))
    for name in ("dataflow", "broker"):
        L.print_block_cycles(sampler, name, args.lateness, since=r["started"])
    peak = sampler.peak.get("dataflow", 0)
    whole = [c for c in L.block_cycles(sampler, "dataflow", args.lateness, r["started"]) if c["whole"]]
    print(
        f"target: dataflow (all its processes) under 1 GiB: {'met' if 0 < peak < 2**30 else 'NOT met'} (peak {C.mib(peak)})"
    )
    if len(whole) > 1:
        grew = (whole[-1]["peak"] - whole[0]["peak"]) / 2**20
        print(f"peak of the last whole cycle against the first: {grew:+,.0f} MiB over {len(whole)} whole cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
