"""Exports replay as they are: NDJSON as BigQuery writes it, CSV, Parquet (flat or nested), gzip; bad rows dead-lettered."""

from __future__ import annotations

import csv
import gzip
import threading
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pulse_testing import expected_windows, run_flow, stored_windows

from pypi_pulse.events import DECODER
from pypi_pulse.producer.files import read_records
from pypi_pulse.producer.publisher import Publisher
from pypi_pulse.producer.replay import replay_file
from pypi_pulse.producer.synthetic import SyntheticSource

T0 = 1795219190


def rows(n=500, seed=4):
    return SyntheticSource(seed=seed).events([T0 + i * 0.01 for i in range(n)])


FLAT = [
    "timestamp",
    "country_code",
    "url",
    "project",
    "file.filename",
    "file.project",
    "file.version",
    "file.type",
    "details.installer.name",
    "details.installer.version",
    "details.python",
    "details.system.name",
    "details.cpu",
    "details.ci",
]


def flatten(row: dict) -> dict:
    out = {}
    for col in FLAT:
        v = row
        for part in col.split("."):
            v = None if v is None else v.get(part)
        out[col] = v
    return out


def test_ndjson_gzip_lines_are_forwarded_byte_for_byte(tmp_path):
    data = rows(50)
    path = tmp_path / "export.ndjson.gz"
    lines = [orjson.dumps(r) for r in data]
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n\n")
    recs = list(read_records(path))
    assert [r.value for r in recs] == lines
    assert [r.key.decode() for r in recs] == [r["project"] for r in data]


@pytest.mark.parametrize("sep", [".", "_"])
def test_csv_rows_become_nested_bigquery_rows(tmp_path, sep):
    data = rows(40)
    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[c.replace(".", sep) for c in FLAT])
        w.writeheader()
        for r in data:
            w.writerow({k.replace(".", sep): ("" if v is None else v) for k, v in flatten(r).items()})
    recs = list(read_records(path))
    assert len(recs) == len(data) and all(r.error is None for r in recs)
    for rec, src in zip(recs, data):
        ev = DECODER.decode(rec.value)
        assert ev.project == src["project"] and ev.file.version == src["file"]["version"]
        assert ev.country_code == src["country_code"]
        if src["details"] is None:
            assert ev.details is None or ev.details.installer is None
        else:
            assert ev.details.installer.name == src["details"]["installer"]["name"]
            assert ev.details.ci == src["details"]["ci"]


def test_parquet_nested_and_flat_replay_the_same_events(tmp_path):
    data = rows(60)
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.Table.from_pylist(data), nested)
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.Table.from_pylist([flatten(r) for r in data]), flat)
    for path in (nested, flat):
        recs = list(read_records(path))
        assert [DECODER.decode(r.value).project for r in recs] == [r["project"] for r in data]
        assert [DECODER.decode(r.value).timestamp for r in recs] == [r["timestamp"] for r in data]


@pytest.mark.parametrize("pack", [1, 100], ids=["one event per message", "packed messages"])
def test_replayed_csv_with_a_broken_row_is_exact_and_dead_letters_the_row(tmp_path, broker, topic, pack):
    data = rows(800)
    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FLAT)
        for i, r in enumerate(data):
            w.writerow(["" if v is None else v for v in flatten(r).values()])
            if i == 100:
                w.writerow(
                    [
                        "2026-11-20 23:59:51 UTC",
                        "US",
                        "/x",
                        "numpy",
                        "extra",
                        "cells",
                        "beyond",
                        "the",
                        "header",
                        "a",
                        "b",
                        "c",
                        "d",
                        "e",
                        "f",
                        "g",
                    ]
                )
    pub = Publisher(broker.bootstrap, topic, topic + "-dlq")
    summary = replay_file(pub, path, None, False, threading.Event(), show_progress=False, pack=pack)
    assert summary.read == len(data) + 1 and summary.sent == len(data) and summary.dead_lettered == 1
    assert sum(pub.end_offsets.values()) == (len(data) if pack == 1 else 8)  # 800 events in messages of 100
    sink = f"sqlite:///{tmp_path / 'csv.db'}"
    run_flow(broker.bootstrap, topic, sink, end_offsets=pub.end_offsets)
    assert stored_windows(sink) == expected_windows(data)


@pytest.mark.parametrize("pack", [1, 50], ids=["one event per message", "packed messages"])
def test_realtime_pacing_follows_event_time_and_restamp_shifts_to_now(tmp_path, broker, topic, pack):
    path = tmp_path / "paced.ndjson"
    events = [
        {"timestamp": f"2026-11-20 23:59:5{i}.000000 UTC", "project": "numpy", "country_code": "US"} for i in range(3)
    ]  # 2 s of event time
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    pub = Publisher(broker.bootstrap, topic, topic + "-dlq")
    started = time.monotonic()
    replay_file(pub, path, 4.0, True, threading.Event(), show_progress=False, pack=pack)  # 4x: at least 0.5 s
    assert time.monotonic() - started >= 0.5
    assert sum(pub.end_offsets.values()) == 3  # a paced replay sends what it holds before each wait
    sink = f"sqlite:///{tmp_path / 'paced.db'}"
    run_flow(broker.bootstrap, topic, sink, end_offsets=pub.end_offsets)
    stored = stored_windows(sink)
    assert sum(w["downloads"] for w in stored.values()) == 3
    assert abs(min(stored) - time.time()) < 120  # restamped: the first event was moved to "now"
