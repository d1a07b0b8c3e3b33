"""The batch target: `pypi-pulse run --source file:EXPORT --speed max --until-drained` on a 400,000-event NDJSON
export, end to end (broker start, producer, dataflow, sink), with the sink checked against an independent count.

    python3 benchmarks/batch_run.py                          # the default export below, 3 runs
    python3 benchmarks/batch_run.py --export FILE.ndjson --runs 1

The default export is generated once (and cached): 400,000 synthetic events in the full BigQuery shape (about 690
bytes a line), a mean of 400 events per second of event time (the synthetic rate follows the day's rhythm, which is
low at this hour: the events span 25 minutes, three 10-minute rollup blocks) and shuffled, as a BigQuery extract
comes in no time order.

Events/s = events / wall time of the whole `pypi-pulse run` process (interpreter start included), and as the
command reports it itself (from the broker's start); each run also measures the floor, a plain single-threaded
orjson loop that parses and counts the same export, and prints the ratio to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402


def file_floor(export: Path) -> float:
    """Events/s of the plain single-threaded loop over the same export: read each line, parse it with orjson and
    count per (second, country), nothing else (the floor every speed here is compared with)."""
    import orjson

    from pypi_pulse.events import epoch_second

    counts: dict = {}
    n = 0
    t = time.perf_counter()
    with open(export, "rb") as f:
        for line in f:
            e = orjson.loads(line)
            key = (epoch_second(e["timestamp"]), e.get("country_code"))
            counts[key] = counts.get(key, 0) + 1
            n += 1
    return n / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, help="an NDJSON export (default: a synthetic one, generated once)")
    ap.add_argument("--events", type=int, default=400_000, help="size of the synthetic export")
    ap.add_argument("--rate", type=float, default=400, help="events per second of event time in the synthetic export")
    ap.add_argument("--in-order", action="store_true", help="the synthetic export in time order (default: shuffled)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE)
    args = ap.parse_args()
    C.print_machine()
    export = args.export or C.synthetic_export(args.events, args.rate, 1, args.cache_dir, shuffle=not args.in_order)
    expected = C.reference(export)
    wall, reported, floors, failed = [], [], [], False
    for run in range(1, args.runs + 1):
        floors.append(file_floor(export))
        print(f"run {run}: floor (orjson loop over the export) {floors[-1]:,.0f} events/s", flush=True)
        work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
        sink = work / "run.db"
        try:
            t = time.perf_counter()
            proc = subprocess.run(
                command_lines.replay(export, f"sqlite:///{sink}", work / "data", "--json"),
                capture_output=True,
                text=True,
            )
            el = time.perf_counter() - t
            if proc.returncode != 0:
                print(f"run {run}: FAILED ({proc.returncode}): {proc.stderr[-2000:]}")
                failed = True
                continue
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            problems = C.check_sink(sink, expected)
            failed = failed or bool(problems)
            wall.append(expected["events"] / el)
            reported.append(summary["events_per_second"])
            print(
                f"run {run}: {wall[-1]:,.0f} events/s wall ({el:.1f} s), {summary['events_per_second']:,} reported; "
                + ("counts EXACT" if not problems else "counts WRONG: " + "; ".join(problems)),
                flush=True,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n== results ({expected['events']:,} events, {export.name}) ==")
    if wall:
        print(C.stats_line("pypi-pulse run, wall clock", wall, "events/s") + " (target >= 100,000)")
        print(C.stats_line("pypi-pulse run, as reported", reported, "events/s"))
        print(C.stats_line("floor, the same runs", floors, "events/s"))
        ratios = sorted(w / f for w, f in zip(wall, floors))
        print(f"  ratio to the same run's floor (wall clock): median {ratios[len(ratios) // 2]:.2f}")
    print("exactness: " + ("FAILED" if failed else "exact in every run"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
