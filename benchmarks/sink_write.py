"""Sink write throughput, SQLite against PostgreSQL: prints numbers, asserts nothing.

    python3 benchmarks/sink_write.py [--postgres-url URL] [--keys 50000] [--buckets 5]

Three shapes of write, as the dataflow makes them: a live flush (a few windows and the counters), a replay flush
(thousands of windows at once) and sealed minute buckets of rollups (tens of thousands of daily keys each; the
second application of the same buckets shows the cost of the applied-once check). PostgreSQL defaults to
$PYPI_PULSE_TEST_POSTGRES_URL and runs in a throw-away schema.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from urllib.parse import quote

import psycopg

from pypi_pulse.rules import NAMES
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow

T0 = 1_795_824_000


def _window(start: int, rnd: random.Random) -> WindowRow:
    top = sorted(
        ((f"project-{rnd.randrange(15000)}", rnd.randrange(1, 50)) for _ in range(10)), key=lambda kv: (-kv[1], kv[0])
    )
    return WindowRow(start, 1000, 700, {"US": 400, "DE": 100, "CN": 150, "ZZ": 350}, top)


def _bucket(minute: int, keys: int, rnd: random.Random) -> RollupBucket:
    dims = NAMES
    counts = {}
    while len(counts) < keys:
        counts[("2026-11-28", f"project-{rnd.randrange(keys // 4)}", rnd.choice(dims), f"c{rnd.randrange(8)}")] = (
            rnd.randrange(1, 20)
        )
    return RollupBucket(T0 + 60 * minute, counts)


def bench(url: str, keys: int, n_buckets: int) -> dict[str, float]:
    rnd = random.Random(1)
    out = {}
    with open_sink(url) as db:
        stats = PipelineStats({"consumed": 1}, {0: 1, 1: 1}, float(T0), float(T0))
        live = [[_window(T0 + i * 5 + j, rnd) for j in range(5)] for i in range(200)]
        t = time.perf_counter()
        for ws in live:
            db.write(ws, stats)
        out["live flush (5 windows + stats), ms each"] = (time.perf_counter() - t) / len(live) * 1000
        replay = [_window(T0 + 10_000 + i, rnd) for i in range(10_000)]
        t = time.perf_counter()
        db.write(replay, stats)
        out["replay flush, windows/s"] = len(replay) / (time.perf_counter() - t)
        buckets = [_bucket(m, keys, rnd) for m in range(n_buckets)]
        t = time.perf_counter()
        for b in buckets:
            db.write_buckets([b])
        out["rollup buckets applied, daily keys/s"] = keys * n_buckets / (time.perf_counter() - t)
        t = time.perf_counter()
        db.write_buckets(buckets)
        out["rollup buckets replayed (no-op), ms"] = (time.perf_counter() - t) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=os.environ.get("PYPI_PULSE_TEST_POSTGRES_URL"))
    ap.add_argument("--keys", type=int, default=50_000, help="daily keys per minute bucket")
    ap.add_argument("--buckets", type=int, default=5)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = bench(f"sqlite:///{tmp}/bench.db", args.keys, args.buckets)
    if args.postgres_url:
        schema = f"pulse_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in args.postgres_url else "?"
            results["postgresql"] = bench(
                f"{args.postgres_url}{sep}options={quote(f'-csearch_path={schema}')}", args.keys, args.buckets
            )
        finally:
            with psycopg.connect(args.postgres_url, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    names = list(next(iter(results.values())))
    print(f"{'':44s}" + "".join(f"{b:>14s}" for b in results))
    for name in names:
        print(f"{name:44s}" + "".join(f"{results[b][name]:14,.1f}" for b in results))


if __name__ == "__main__":
    main()
