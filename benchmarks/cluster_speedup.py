"""Benchmark: the dataflow as one process and as a local Bytewax cluster of two, on the same preloaded topic.

    python3 benchmarks/cluster_speedup.py                  # 1,000,000 events, 1 and 2 processes x 1 worker, 3 runs
    python3 benchmarks/cluster_speedup.py --events 200000 --runs 1

What it does: generates synthetic events of PyPI's real shape once (cached, benchmarks/_common.py), counts them
independently, publishes them to a fresh 4-partition topic on the embedded broker, then, per run and shape, runs
the real dataflow (`run_dataflow`, SQLite sink, `shards` clocks) in a child process until it has read every
partition's end offset, handed to every member as a batch run hands them (`StopOffsetsFile`). The child starts as
`pypi-pulse dataflow --processes N` does: members 1.. spawned before its own imports (dataflow/early_members.py).
Two measures, both reported: the command (the child's start to its exit, imports included: what a user waits
for) and the dataflow (`run_dataflow`'s call to its return, this process's imports excluded; the second member's
start is included as far as it was not done meanwhile). The sink is compared with the reference (windows, daily
rows, counters). Target: 2 processes >= 1.6x.
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
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.6


def run_child(config: dict) -> None:
    """One dataflow run in this (child) process; prints its seconds as JSON."""
    if config["processes"] > 1:  # as the `dataflow` command does, before the imports of the dataflow
        from pypi_pulse.dataflow.early_members import start_early

        start_early(config["processes"])
    from pypi_pulse import logs
    from pypi_pulse.dataflow.flow import FlowConfig
    from pypi_pulse.dataflow.runner import StopOffsetsFile, run_dataflow

    logs.setup("warning", "console")
    stop = StopOffsetsFile(Path(config["stop_file"]))
    stop.write(offsets={int(p): o for p, o in config["end_offsets"].items()})
    cfg = FlowConfig(
        config["bootstrap"],
        config["topic"],
        config["topic"] + "-dlq",
        config["partitions"],
        config["sink_url"],
        shards=config["shards"],
    )
    t = time.perf_counter()
    run_dataflow(cfg, workers=1, processes=config["processes"], epoch_s=10.0, stop_offsets=stop)
    print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


def one_run(
    bootstrap: str, topic: str, end_offsets: dict, processes: int, shards: int, work: Path
) -> tuple[float, float, Path]:
    """(the dataflow's seconds, the command's seconds, the run's directory)"""
    run_dir = Path(tempfile.mkdtemp(prefix=f"p{processes}-", dir=work))
    config = {
        "bootstrap": bootstrap,
        "topic": topic,
        "partitions": len(end_offsets),
        "sink_url": f"sqlite:///{run_dir / 'pulse.db'}",
        "end_offsets": end_offsets,
        "stop_file": str(run_dir / "stop-offsets.json"),
        "processes": processes,
        "shards": shards,
    }
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "run-child", json.dumps(config)], capture_output=True, text=True, timeout=3600
    )
    command_s = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"dataflow ({processes} processes) failed with exit code {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"], command_s, run_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="runs per shape (medians are reported)")
    ap.add_argument("--shards", type=int, default=8, help="the dataflow's clocks (the `shards` setting's default)")
    ap.add_argument("--rate", type=float, default=66_000, help="events per second of event time in the data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE)
    args = ap.parse_args()

    C.print_machine()
    export = C.synthetic_export(args.events, args.rate, args.seed, args.cache_dir)
    expected = C.reference(export)
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    broker = C.start_broker(work)
    rates: dict[int, list[float]] = {1: [], 2: []}  # events over the dataflow's seconds
    command_rates: dict[int, list[float]] = {1: [], 2: []}  # events over the command's seconds
    wrong: list[str] = []
    try:
        topic = "bench-downloads"
        C.create_topic(broker.bootstrap, topic)
        end_offsets, secs = C.preload(broker.bootstrap, topic, export)
        print(f"preloaded {sum(end_offsets.values()):,} events in 4 partitions in {secs:.1f} s", flush=True)
        if sum(end_offsets.values()) != expected["events"]:
            print(f"MISMATCH: published {sum(end_offsets.values())} of {expected['events']}")
            return 1
        for run in range(1, args.runs + 1):
            for processes in (1, 2):
                seconds, command_s, run_dir = one_run(
                    broker.bootstrap, topic, end_offsets, processes, args.shards, work
                )
                rates[processes].append(expected["events"] / seconds)
                command_rates[processes].append(expected["events"] / command_s)
                problems = C.check_sink(run_dir / "pulse.db", expected)
                wrong += [f"run {run}, {processes} process(es): {p}" for p in problems]
                verdict = "exact" if not problems else "WRONG: " + "; ".join(problems)
                print(
                    f"run {run}: {processes} process(es) x 1 worker, {args.shards} shards: "
                    f"{rates[processes][-1]:,.0f} events/s ({seconds:.2f} s dataflow), "
                    f"{command_rates[processes][-1]:,.0f} events/s ({command_s:.2f} s command), {verdict}",
                    flush=True,
                )
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n== results ==")
    print(f"events: {expected['events']:,} in 4 partitions, {args.shards} shards")
    for processes in (1, 2):
        print(C.stats_line(f"{processes} process(es) x 1 worker, dataflow", rates[processes], "events/s"))
        print(C.stats_line(f"{processes} process(es) x 1 worker, command", command_rates[processes], "events/s"))
    ratio = median(rates[2]) / median(rates[1])
    command_ratio = median(command_rates[2]) / median(command_rates[1])
    print(f"speed-up of 2 processes, dataflow: {ratio:.2f}x (target >= {TARGET}x)")
    print(f"speed-up of 2 processes, command (start to exit): {command_ratio:.2f}x")
    print("exactness: " + ("every window, daily row and counter exact in every run" if not wrong else "FAILED"))
    for line in wrong:
        print("  " + line)
    return 1 if wrong else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run-child":
        run_child(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
