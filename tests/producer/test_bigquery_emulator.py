"""The BigQuery source against a local BigQuery (bqemulator, its own virtualenv, started as a subprocess) with the
real google-cloud-bigquery client: incremental polling with late loads, historical day-by-day pulls, filters,
Parquet export, the per-day aggregates of backfill, and one run through the real broker and dataflow."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter

import orjson
import pytest
from bq_fakes import TABLE, Emulator
from expected_rollups import expected_daily, make_event
from pulse_testing import expected_windows, run_flow, stored_windows

from pypi_pulse.config import load_settings
from pypi_pulse.events import format_bigquery_ts
from pypi_pulse.names import normalize
from pypi_pulse.producer.bigquery import IncrementalReader, ParquetExport, daily_aggregates
from pypi_pulse.producer.bigquery_costs import BigQuerySession
from pypi_pulse.producer.bigquery_source import run_bigquery_source
from pypi_pulse.producer.files import read_records
from pypi_pulse.producer.publisher import Publisher

D0 = 1795046400  # 2026-11-19T00:00:00Z


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("bqemulator") / "bqemulator.log").start()
    yield emu
    emu.stop()


@pytest.fixture
def table(emulator):
    emulator.create_downloads_table()
    return emulator


def _settings(emulator, tmp_path, **kw):
    return load_settings(
        None,
        source="bigquery",
        bigquery_endpoint=emulator.endpoint,
        billing_project="demo",
        bigquery_table=TABLE,
        data_dir=tmp_path / "data",
        **kw,
    )


def _row(e: dict) -> dict:
    """make_event's dict as the table row: BigQuery timestamp text, top-level project as PyPI fills it."""
    r = dict(e, timestamp=format_bigquery_ts(e["timestamp"]))
    r["project"] = normalize(e["file"]["project"])
    return r


def _identity(ev: dict) -> tuple:
    """What the pipeline reads from an event, from either an inserted row or a published one."""
    f = ev.get("file") or {}
    d = ev.get("details") or {}
    ci = d.get("ci")
    return (
        ev["timestamp"] if isinstance(ev["timestamp"], str) else format_bigquery_ts(ev["timestamp"]),
        ev.get("country_code"),
        f.get("project"),
        f.get("version"),
        f.get("type"),
        (d.get("installer") or {}).get("name"),
        d.get("python"),
        (d.get("system") or {}).get("name"),
        d.get("cpu"),
        None if ci is None else bool(ci),
    )


def _events(rng, n, lo, hi):
    return [make_event(rng, lo + rng.random() * (hi - lo)) for _ in range(n)]


def test_incremental_polling_keeps_late_loads_and_sends_nothing_twice(table, tmp_path):
    rng = random.Random(5)
    t0 = D0 + 3600
    first = _events(rng, 200, t0, t0 + 600)
    table.insert([_row(e) for e in first])

    session = BigQuerySession(_settings(table, tmp_path, overlap_minutes=10))
    reader = IncrementalReader(session, start=t0, end=None, overlap_s=600)
    got = reader.poll(now=t0 + 600)
    assert Counter(_identity(orjson.loads(e.value)) for e in got) == Counter(_identity(e) for e in first)
    assert [e.epoch for e in got] == sorted(e.epoch for e in got)  # event-time order
    assert reader.watermark == max(e["timestamp"] for e in first)

    # a batch load arrives: rows from behind the watermark (inside the overlap), a second download identical to
    # one already sent, and new rows
    late = _events(rng, 50, t0 + 300, t0 + 590)
    twin = dict(first[0])
    new = _events(rng, 80, t0 + 600, t0 + 900)
    table.insert([_row(e) for e in late + [twin] + new])
    got2 = reader.poll(now=t0 + 900)
    assert Counter(_identity(orjson.loads(e.value)) for e in got2) == Counter(_identity(e) for e in late + [twin] + new)
    assert reader.poll(now=t0 + 960) == []  # nothing new: nothing sent

    sent = Counter(_identity(orjson.loads(e.value)) for e in got + got2)
    assert sent == Counter(_identity(e) for e in first + late + [twin] + new)
    assert all(e.key == orjson.loads(e.value)["file"]["project"].encode() for e in got + got2)  # key = project


def test_historical_pull_reads_each_day_once_filters_and_exports(table, tmp_path):
    rng = random.Random(7)
    days = [_events(rng, 60, D0 + i * 86400, D0 + (i + 1) * 86400) for i in range(3)]
    table.insert([_row(e) for d in days for e in d])

    s = _settings(table, tmp_path, start="2026-11-19", end="2026-11-21", export=tmp_path / "read.parquet")
    session = BigQuerySession(s)
    export = ParquetExport(s.export)
    reader = IncrementalReader(session, start=D0, end=D0 + 2 * 86400, overlap_s=600, exporter=export)
    polls = []
    while not reader.finished:
        polls.append(reader.poll())
    export.close()
    assert len(polls) == 2  # one query per day partition touched
    got = [orjson.loads(e.value) for p in polls for e in p]
    assert Counter(map(_identity, got)) == Counter(_identity(e) for e in days[0] + days[1])  # day 3 excluded

    # the export replays as --source file:PATH with the same events
    records = list(read_records(s.export))
    assert [r.error for r in records if r.error is not None] == []
    replayed = [orjson.loads(r.value) for r in records]
    assert Counter(map(_identity, replayed)) == Counter(map(_identity, got))

    # --projects (clustering column) and a deterministic --sample
    s2 = _settings(table, tmp_path, projects="Zope.Interface, requests")
    r2 = IncrementalReader(BigQuerySession(s2), start=D0, end=D0 + 3 * 86400, overlap_s=600)
    picked = [orjson.loads(e.value) for _ in range(3) for e in r2.poll()]
    want = [e for d in days for e in d if normalize(e["file"]["project"]) in ("zope-interface", "requests")]
    assert Counter(map(_identity, picked)) == Counter(map(_identity, want))

    s3 = _settings(table, tmp_path, sample=0.5)
    r3 = IncrementalReader(BigQuerySession(s3), start=D0, end=D0 + 3 * 86400, overlap_s=600)
    sampled = [orjson.loads(e.value) for _ in range(3) for e in r3.poll()]
    r3b = IncrementalReader(BigQuerySession(s3), start=D0, end=D0 + 3 * 86400, overlap_s=600)
    again = [orjson.loads(e.value) for _ in range(3) for e in r3b.poll()]
    assert 40 < len(sampled) < 140 and Counter(map(_identity, sampled)) == Counter(map(_identity, again))
    assert set(map(_identity, sampled)) <= set(_identity(e) for d in days for e in d)


def test_daily_aggregates_match_the_dataflow_rules(table, tmp_path):
    rng = random.Random(11)
    events = _events(rng, 400, D0, D0 + 86400) + _events(rng, 100, D0 + 86400, D0 + 2 * 86400)
    table.insert([_row(e) for e in events])
    s = _settings(table, tmp_path)
    got = Counter()
    for project, dimension, category, n in daily_aggregates(s, dt.date(2026, 11, 19)):
        got[("2026-11-19", project, dimension, category)] += n
    want = Counter({k: v for k, v in expected_daily(events).items() if k[0] == "2026-11-19"})
    assert got == want


def test_bigquery_rows_through_broker_and_dataflow_give_exact_windows(
    table, tmp_path, broker, topic, sqlite_url, capsys
):
    rng = random.Random(13)
    t0 = D0 + 7200
    events = _events(rng, 300, t0, t0 + 20)
    table.insert([_row(e) for e in events])
    s = _settings(table, tmp_path, start=format_bigquery_ts(t0), end=format_bigquery_ts(t0 + 30))
    pub = Publisher(broker.bootstrap, topic, topic + "-dlq")
    summary = run_bigquery_source(pub, s, threading.Event())
    assert summary.read == summary.sent == 300 and summary.failed == 0
    assert "dry run: the first query will scan" in capsys.readouterr().err
    run_flow(broker.bootstrap, topic, sqlite_url, end_offsets=dict(pub.end_offsets))
    # conftest's expectation counts codes as given: the pipeline keeps any two-capital code (make_event's "XX") too
    assert stored_windows(sqlite_url) == expected_windows(events)


def test_live_polling_delayed_by_d_minutes_keeps_event_time_spacing(table, tmp_path, broker, topic):
    import time

    from confluent_kafka import Consumer, TopicPartition

    rng = random.Random(17)
    t0 = D0 + 10800
    events = [dict(make_event(rng, t0 + i * 0.5)) for i in range(8)]
    table.insert([_row(e) for e in events])
    offset = time.time() - (t0 + 1)  # the emulator's "now" is 1 s after the first download
    delay_s = 3.0
    s = _settings(table, tmp_path, delay=delay_s / 60, poll_interval=0.5, overlap_minutes=1)
    pub = Publisher(broker.bootstrap, topic, topic + "-dlq")
    stop = threading.Event()
    worker = threading.Thread(
        target=run_bigquery_source, args=(pub, s, stop), kwargs={"clock": lambda: time.time() - offset}
    )
    worker.start()
    deadline = time.monotonic() + 30
    while pub.summary.sent < len(events) and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.05)  # polling for the condition, with a deadline
    stop.set()
    worker.join(30)
    assert pub.summary.sent == len(events)

    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": f"check-{topic}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < len(events) and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.timestamp()[1] / 1000 - offset, orjson.loads(m.value())))
    consumer.close()
    assert len(got) == len(events)
    got.sort(key=lambda g: g[0])
    sent_ts = [
        dt.datetime.strptime(e["timestamp"], "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=dt.UTC).timestamp()
        for _, e in got
    ]
    assert sent_ts == sorted(sent_ts)  # published in event-time order
    for (when, _), ts in zip(got, sent_ts):
        assert ts + delay_s - 0.05 <= when <= ts + delay_s + 1.5  # each row leaves D after it happened
