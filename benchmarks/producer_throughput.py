"""Benchmark 3: producer throughput, synthetic and file replay, into the embedded broker.

    python3 benchmarks/producer_throughput.py                    # 400,000 events, 3 runs each
    python3 benchmarks/producer_throughput.py --events 1000000 --runs 5

Measured, each with a fresh topic (4 partitions) on one embedded broker, every event acknowledged by Kafka:
- synthetic: `SyntheticSource.encoded` batches published with `Publisher.send_many` as fast as possible (the live
  loop `run_synthetic` adds only pacing to this);
- file replay: `replay_file(..., speed=None)` of an NDJSON export, the path `pypi-pulse run --source file:...
  --speed max` takes (lines are forwarded without being parsed; the Kafka key is found with a regex);
- both again with packed messages (`--pack-events`, default 1,000 events a message, as `run` and `up` on the
  embedded broker send them);
- and, for scale, the generator alone and the file reader alone (no Kafka).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from pypi_pulse.producer.files import read_records  # noqa: E402
from pypi_pulse.producer.publisher import Publisher  # noqa: E402
from pypi_pulse.producer.replay import replay_file  # noqa: E402
from pypi_pulse.producer.synthetic import SyntheticSource  # noqa: E402


def synthetic_generate(n: int) -> float:
    src = SyntheticSource(1)
    t, made, sec = time.perf_counter(), 0, float(C.T0)
    while made < n:
        made += len(src.encoded(src.timestamps(sec, sec + 0.05, 20_000 * 20)))
        sec += 0.05
    return made / (time.perf_counter() - t)


def synthetic_publish(bootstrap: str, topic: str, n: int, pack: int = 1) -> float:
    src = SyntheticSource(1)
    pub = Publisher(bootstrap, topic, topic + "-dlq")
    t, sec = time.perf_counter(), float(C.T0)
    while pub.summary.read < n:
        batch = src.encoded(src.timestamps(sec, sec + 0.05, 20_000 * 20))[: n - pub.summary.read]
        pub.summary.read += len(batch)
        if pack == 1:
            pub.send_many(batch)
        else:
            pub.send_packed([value for value, _key in batch], pack)
        sec += 0.05
    pub.flush(300)
    if pub.summary.sent != n:
        raise SystemExit(f"synthetic: {pub.summary.sent} of {n} acknowledged")
    return n / (time.perf_counter() - t)


def file_read(path: Path) -> float:
    t = time.perf_counter()
    n = sum(1 for _ in read_records(path))
    return n / (time.perf_counter() - t)


def file_replay(bootstrap: str, topic: str, path: Path, n: int, pack: int = 1) -> float:
    pub = Publisher(bootstrap, topic, topic + "-dlq")
    t = time.perf_counter()
    s = replay_file(pub, path, None, False, threading.Event(), show_progress=False, pack=pack)
    el = time.perf_counter() - t
    if s.sent != n:
        raise SystemExit(f"file replay: {s.sent} of {n} acknowledged")
    return n / el


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pack-events", type=int, default=1000, help="events per message in the packed runs")
    ap.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE)
    args = ap.parse_args()
    C.print_machine()
    export = C.synthetic_export(args.events, 66_000, 1, args.cache_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-producer-"))
    broker = C.start_broker(work)
    pack = args.pack_events
    # name -> (prefix of a fresh topic per run, or None without Kafka; what to measure, given that topic)
    runs = {
        "generator alone (no Kafka)": (None, lambda topic: synthetic_generate(args.events)),
        "synthetic -> Kafka": ("syn", lambda topic: synthetic_publish(broker.bootstrap, topic, args.events)),
        f"synthetic -> Kafka, packed by {pack}": (
            "synp",
            lambda topic: synthetic_publish(broker.bootstrap, topic, args.events, pack),
        ),
        "file reader alone (no Kafka)": (None, lambda topic: file_read(export)),
        "file replay -> Kafka": ("file", lambda topic: file_replay(broker.bootstrap, topic, export, args.events)),
        f"file replay -> Kafka, packed by {pack}": (
            "filep",
            lambda topic: file_replay(broker.bootstrap, topic, export, args.events, pack),
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for run in range(1, args.runs + 1):
            for name, (prefix, fn) in runs.items():
                topic = None if prefix is None else f"{prefix}{run}"
                if topic is not None:
                    C.create_topic(broker.bootstrap, topic)
                rate = fn(topic)
                results[name].append(rate)
                print(f"run {run}: {name} {rate:,.0f} events/s", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n== results ({args.events:,} events per run) ==")
    for name, values in results.items():
        print(C.stats_line(name, values, "events/s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
