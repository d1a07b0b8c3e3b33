"""Cost of a Prometheus scrape of `pypi-pulse metrics`, and of the per-batch metric hooks: prints numbers.

    python3 benchmarks/metrics_scrape.py [--windows 7200] [--countries 200] [--scrapes 200]

Builds an SQLite sink with `--windows` seconds of windows (each with `--countries` countries and a top 10) and a
day of sealed rollups, then times full scrapes (sink read + exposition, cache disabled) for several spans.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from prometheus_client import generate_latest

from pypi_pulse.countries import ALPHA2
from pypi_pulse.metrics import dataflow_metrics
from pypi_pulse.metrics.sink_collector import build_registry
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow

T0 = 1_795_824_000


def build(path: Path, n_windows: int, n_countries: int) -> str:
    rnd = random.Random(1)
    codes = sorted(ALPHA2)[:n_countries]
    url = f"sqlite:///{path}"
    with open_sink(url) as db:
        for lo in range(0, n_windows, 600):
            rows = []
            for s in range(T0 + lo, T0 + min(lo + 600, n_windows)):
                countries = {c: rnd.randrange(1, 3000) for c in codes}
                top = sorted(
                    ((f"project-{rnd.randrange(15000)}", rnd.randrange(1, 900)) for _ in range(10)),
                    key=lambda kv: (-kv[1], kv[0]),
                )
                rows.append(WindowRow(s, sum(countries.values()), rnd.randrange(5000, 20000), countries, top))
            db.write(rows, None)
        counts = Counter(
            {("2026-11-27", f"project-{i}", "overall", None): rnd.randrange(1, 10**6) for i in range(15000)}
        )
        db.write_buckets([RollupBucket(T0, dict(counts))])
        db.write([], PipelineStats({"consumed": 1, "counted": 1}, {0: 1, 1: 2}, T0, T0))
    return url


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=7200)
    ap.add_argument("--countries", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        url = build(Path(tmp) / "bench.db", a.windows, a.countries)
        print(f"built sink: {a.windows} windows x {a.countries} countries in {time.perf_counter() - t:.1f} s")
        for span in (1, 10, 60):
            registry, collector = build_registry(url, span_s=span, cache_s=0)
            generate_latest(registry)  # open the connection
            t = time.perf_counter()
            for _ in range(a.scrapes):
                body = generate_latest(registry)
            per = (time.perf_counter() - t) / a.scrapes
            samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            print(f"scrape span={span:>2}s: {per * 1000:7.2f} ms/scrape, {len(body):,} bytes, {samples:,} samples")
            collector.close()

    class Part:  # what dataflow_metrics needs of a live source partition
        partition = 0

    part = Part()
    dataflow_metrics.track_partition(part, "bench")
    n = 200_000
    t = time.perf_counter()
    for _ in range(n):
        dataflow_metrics.consumed(part, 20_000)
    print(f"per-batch consumed hook: {(time.perf_counter() - t) / n * 1e6:.2f} µs")
    t = time.perf_counter()
    for i in range(n):
        dataflow_metrics.sink_written(0.001, (i,), T0 + i + 1.5)
    print(f"per-flush sink hook (one new window): {(time.perf_counter() - t) / n * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
