"""Benchmark 1: dataflow throughput on a preloaded 4-partition topic, with exact counts, against the plain floor.

    python3 benchmarks/dataflow_throughput.py                # 2,000,000 events, 1 and 2 workers, 3 runs each
    python3 benchmarks/dataflow_throughput.py --quick        # 200,000 events, 1 worker: exactness only (CI)

What it does: generates synthetic events once (cached under ~/.cache/pypi-pulse-bench, event time at PyPI's
average of 66,000 events/s), counts them independently (orjson, one event at a time), publishes them to a fresh
topic on the embedded broker, then, per run:
- the floor: a plain confluent-kafka loop that reads the topic, parses each event with orjson and counts per
  (second, country), nothing else;
- the dataflow (`run_dataflow`, SQLite sink) in a child process, until it has read every partition's end offset;
  the sink is then compared with the reference: every window (downloads, countries, unique packages, top 10),
  every `daily` and `daily_totals` row, and the pipeline counters. Any difference exits with status 1.
It prints events/s (medians of the runs), the ratio to the floor, and the peak RSS of each process.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from statistics import median

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def floor(bootstrap: str, topic: str, end_offsets: dict[int, int]) -> tuple[float, int]:
    """Events/s of a bare consumer loop that parses every event and counts per (second, country)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-floor",
            "enable.auto.commit": False,
            "queued.min.messages": 200_000,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "log_level": 3,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in end_offsets])
    total = sum(end_offsets.values())
    counts: Counter = Counter()
    seen = 0
    loads = orjson.loads
    t = time.perf_counter()
    while seen < total:
        for m in consumer.consume(10_000, 1.0):
            if m.error() is not None:
                continue
            e = loads(m.value())
            counts[(e["timestamp"][:19], e["country_code"])] += 1
            seen += 1
    elapsed = time.perf_counter() - t
    consumer.close()
    if sum(counts.values()) != total:
        raise SystemExit(f"floor loop counted {sum(counts.values())} of {total}")
    return total / elapsed, seen


def dataflow_run(
    bootstrap: str,
    topic: str,
    end_offsets: dict,
    workers: int,
    work: Path,
    sampler: C.RssSampler,
    expected: dict,
    run: int,
) -> tuple[float, float, list[str]]:
    """Events/s of the whole run, and the seconds from the run's start until its last window was written: the
    rest of the run is the rollup block, which a run of 46 s of event time can only seal (and write) at the end."""
    sink = work / f"w{workers}-r{run}.db"
    proc = C.spawn_flow(
        {
            "bootstrap": bootstrap,
            "topic": topic,
            "partitions": len(end_offsets),
            "sink_url": f"sqlite:///{sink}",
            "workers": workers,
            "end_offsets": end_offsets,
        }
    )
    sampler.watch(f"dataflow ({workers} worker{'s' if workers > 1 else ''})", proc.pid)
    result = C.finish_flow(proc, timeout=3600)
    problems = C.check_sink(sink, expected)
    db = sqlite3.connect(sink)
    windows_done = db.execute("SELECT MAX(written_at) FROM windows").fetchone()[0] - result["started_at"]
    db.close()
    for p in sink.parent.glob(sink.name + "*"):
        p.unlink()
    return expected["events"] / result["seconds"], windows_done, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--quick", action="store_true", help="200,000 events, 1 worker, one run: check exactness only")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to run")
    ap.add_argument("--runs", type=int, default=3, help="runs per configuration (medians are reported)")
    ap.add_argument("--rate", type=float, default=66_000, help="events per second of event time in the data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE)
    args = ap.parse_args()
    if args.quick:
        args.events, args.workers, args.runs = 200_000, "1", 1
    workers = [int(w) for w in args.workers.split(",")]

    C.print_machine()
    export = C.synthetic_export(args.events, args.rate, args.seed, args.cache_dir)
    expected = C.reference(export)
    work = Path(tempfile.mkdtemp(prefix="bench-dataflow-"))
    sampler = C.RssSampler().start()
    broker = C.start_broker(work)
    failed = False
    try:
        sampler.watch("broker", broker.proc.pid)
        import os

        sampler.watch("benchmark (preload + floor loop)", os.getpid())
        topic = "bench-downloads"
        C.create_topic(broker.bootstrap, topic)
        end_offsets, secs = C.preload(broker.bootstrap, topic, export)
        print(
            f"preloaded {sum(end_offsets.values()):,} events in 4 partitions in {secs:.1f} s "
            f"({sum(end_offsets.values()) / secs:,.0f} events/s through the Publisher)",
            flush=True,
        )
        if sum(end_offsets.values()) != expected["events"]:
            print(f"MISMATCH: published {sum(end_offsets.values())} of {expected['events']}")
            return 1
        floors: list[float] = []
        rates: dict[int, list[float]] = {w: [] for w in workers}
        stream_rates: dict[int, list[float]] = {w: [] for w in workers}
        for run in range(1, args.runs + 1):
            if not args.quick:
                f, _ = floor(broker.bootstrap, topic, end_offsets)
                floors.append(f)
                print(f"run {run}: floor (confluent-kafka + orjson + Counter) {f:,.0f} events/s", flush=True)
            for w in workers:
                rate, windows_done, problems = dataflow_run(
                    broker.bootstrap, topic, end_offsets, w, work, sampler, expected, run
                )
                rates[w].append(rate)
                stream_rates[w].append(expected["events"] / windows_done)
                verdict = "counts EXACT" if not problems else "counts WRONG: " + "; ".join(problems)
                total_s = expected["events"] / rate
                print(
                    f"run {run}: dataflow {w} worker(s) {rate:,.0f} events/s, {verdict}; every window written "
                    f"after {windows_done:.1f} s, the rollup block in the remaining {total_s - windows_done:.1f} s",
                    flush=True,
                )
                failed = failed or bool(problems)
        sampler.stop()
        print("\n== results ==")
        print(f"events: {expected['events']:,} in 4 partitions ({len(expected['windows'])} s of event time)")
        if floors:
            print(C.stats_line("floor", floors, "events/s"))
        for w in workers:
            print(C.stats_line(f"dataflow, {w} worker(s)", rates[w], "events/s"))
            if floors:
                print(f"  ratio to floor: {median(rates[w]) / median(floors):.2f} (target >= 0.8 on 1 worker)")
            print(C.stats_line(f"  until the last window, {w} worker(s)", stream_rates[w], "events/s"))
            if floors:
                print(
                    f"  ratio to floor until the last window: {median(stream_rates[w]) / median(floors):.2f} "
                    "(the rest is the rollup block's write at the end)"
                )
        for name, peak in sampler.peak.items():
            print(f"peak RSS {name}: {C.mib(peak)}")
        print("exactness: " + ("FAILED" if failed else "every window, daily row and counter exact in every run"))
    finally:
        sampler.stop() if sampler._thread.is_alive() else None
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
