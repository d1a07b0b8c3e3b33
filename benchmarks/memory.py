"""Benchmark 5: memory. Peak RSS of each process during benchmark 1, and the dataflow's RSS over a steady run at
20,000 events/s (default 10 minutes), showing whether it grows.

    python3 benchmarks/memory.py                        # benchmark 1 (1 run, 1 worker) + 10 minutes at 20,000/s
    python3 benchmarks/memory.py --minutes 3 --skip-throughput
    python3 benchmarks/memory.py --skip-throughput --recovery   # the steady run with a recovery store, as `up`

The steady run is the live setup of benchmark 2 (real producer and dataflow processes, embedded broker, SQLite
sink), sampled every second with psutil. "Growth" compares the median RSS of the last minute with that of the
minute after the warm-up; that includes the rollup block filling up (a block gathers every key of its 10 minutes
until it is sealed), so the run also reports the RSS just before each seal, when the block is whole: a state that
does not grow has the same figure before every seal. Two whole blocks need a run from just before a 10-minute
boundary to 20 minutes and the lateness horizon after it (e.g. `--lateness 60 --minutes 21.5` started at hh:m9:30).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datetime import UTC

import _common as C  # noqa: E402


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
    args = ap.parse_args()
    C.print_machine()
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
    sampler = C.RssSampler(every_s=1.0).start()
    try:
        r = C.live_run(
            args.rate,
            args.minutes * 60,
            work,
            sampler,
            report_every_s=60,
            recovery=args.recovery,
            lateness_s=args.lateness,
            pack_events=args.pack_events,
        )
    finally:
        sampler.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n== results ==")
    for line in peaks:
        print("benchmark 1: " + line)
    print(
        f"steady run: {args.rate:,.0f} events/s for {r['seconds'] / 60:.1f} min "
        f"(median {r['events_per_window']:,.0f} events per 1-s window)"
    )
    for name, series in sampler.series.items():
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
    _before_each_seal(sampler, args.lateness)
    together: dict = {}  # the dataflow and the process it applies sealed blocks in, sample by sample
    for name in ("dataflow", "block writer"):
        for t, v in sampler.series.get(name, []):
            together[t] = together.get(t, 0) + v
    if together:
        what = "dataflow with its block writer" if sampler.series.get("block writer") else "dataflow"
        peak = max(together.values())
        print(f"target: {what} under 1 GiB: {'met' if peak < 2**30 else 'NOT met'} (peak {C.mib(peak)})")
    return 0


def _before_each_seal(sampler, lateness_s: float) -> None:
    """The dataflow's state has a 10-minute period: a rollup block gathers every key of its 10 minutes, is sealed
    once the watermark passes its end by the lateness horizon, then merged, written and freed. Growth is judged at
    the same phase of every block: the RSS in the 30 s before each seal, when the block is whole (a block the run
    started inside of is marked partial); a state that does not grow has the same figure before every seal."""
    from datetime import datetime

    from pypi_pulse.dataflow.clock import BLOCK_S

    for name, series in sampler.series.items():
        if not series:
            continue
        wall = [(sampler.started_wall + t, v) for t, v in series]
        first, last = wall[0][0], wall[-1][0]
        cells, whole = [], []
        for end in range(int((first // BLOCK_S + 1) * BLOCK_S), int(last), BLOCK_S):
            seal = end + lateness_s
            vals = [v for t, v in wall if seal - 30 <= t < seal]
            if not vals or seal > last:
                continue
            full = first <= end - BLOCK_S
            cells.append(
                f"{datetime.fromtimestamp(end, UTC):%H:%M} {C.mib(median(vals))}" + ("" if full else " (partial block)")
            )
            if full:
                whole.append(median(vals))
        if not cells:
            print(f"{name}: no block sealed within the run")
            continue
        print(
            f"{name}: before each seal (block ending at): {'; '.join(cells)}"
            + (f"; growth between whole blocks {(whole[-1] - whole[0]) / 2**20:+,.0f} MiB" if len(whole) > 1 else "")
        )


if __name__ == "__main__":
    sys.exit(main())
