"""BigQuery source, the CPU side of a poll: result rows → published events, with the overlap de-duplication.

    python3 benchmarks/bigquery_rows.py [--rows 200000]

Prints rows/s for (1) a poll of new rows (Arrow result → nested BigQuery-shaped JSON → digest → kept) and (2) the
same rows read again, as the overlap window re-reads them (all dropped as already sent). No network: the rows are
generated as the query's flat Arrow result; BigQuery's own latency is not measured here. Asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time

import pyarrow as pa

from pypi_pulse.config import load_settings
from pypi_pulse.producer.bigquery import IncrementalReader
from pypi_pulse.producer.bigquery_costs import BigQuerySession

T0 = 1_795_824_000


def result_table(n: int, rng: random.Random) -> pa.Table:
    base = dt.datetime.fromtimestamp(T0, dt.UTC)
    cols = {
        "timestamp": [base + dt.timedelta(microseconds=rng.randrange(600_000_000)) for _ in range(n)],
        "country_code": [rng.choice(["US", "DE", "CN", None]) for _ in range(n)],
        "file_project": [f"project-{rng.randrange(15000)}" for _ in range(n)],
        "file_version": [rng.choice(["1.0", "2.3.1", None]) for _ in range(n)],
        "file_type": [rng.choice(["bdist_wheel", "sdist"]) for _ in range(n)],
        "details_installer_name": [rng.choice(["pip", "uv", "bandersnatch", None]) for _ in range(n)],
        "details_python": [rng.choice(["3.12.1", "3.11.9", None]) for _ in range(n)],
        "details_system_name": [rng.choice(["Linux", "Windows", None]) for _ in range(n)],
        "details_cpu": [rng.choice(["x86_64", "aarch64", None]) for _ in range(n)],
        "details_ci": [rng.choice([True, None]) for _ in range(n)],
    }
    return pa.table(cols).sort_by("timestamp")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    table = result_table(args.rows, random.Random(1))
    with tempfile.TemporaryDirectory() as d:
        s = load_settings(
            None, source="bigquery", bigquery_endpoint="http://127.0.0.1:9", billing_project="bench", data_dir=d
        )
        reader = IncrementalReader(BigQuerySession(s), start=T0, end=None, overlap_s=900)
        for label in ("new rows", "overlap re-read"):
            t = time.perf_counter()
            events, _ = reader._new_rows(table)
            el = time.perf_counter() - t
            print(f"{label:16s} {args.rows:,} rows in {el:.2f} s = {args.rows / el:,.0f} rows/s, {len(events):,} kept")


if __name__ == "__main__":
    main()
