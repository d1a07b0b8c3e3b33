"""One event stamped far in the future (or before 2016, or with an epoch number out of any range) is dead-lettered
with its reason and changes nothing else: the events around it are counted exactly, the watermark and retention
never follow it, the dataflow keeps running, and the API answers. A sink whose watermark was poisoned by an
older version does not break the API either. Truth is computed here from the events sent."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime

import orjson
import requests
from confluent_kafka import Consumer, TopicPartition
from dataflow_testing import live_dataflow
from pulse_testing import expected_windows, poll_sink, publish, stored_windows
from replay_faults_testing import batch_run, spread_events

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port
from pypi_pulse.sink.base import open_sink

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()
PROJECTS = ["requests", "numpy", "boto3", "flask", "urllib3"]
FAR_FUTURE = "9999-12-31 23:59:59 UTC"
PRUNE_EVERY_S = 60  # the store step prunes (retention) and summarises this often: dataflow/outputs.py


def _events(start: float, n: int, span_s: float = 60.0) -> list[dict]:
    return spread_events(start, n, span_s, PROJECTS)


def _dead_letters(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list[tuple[bytes, str]]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append((m.value(), dict(m.headers())["reason"].decode()))
    finally:
        c.close()
    return out


def _serve(sink: str, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        command_lines.serve(port, sink, tmp_path / "serve", "--public-api"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2)
            return proc, f"http://127.0.0.1:{port}"
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "serve did not start listening in 60 s"
            time.sleep(0.1)  # polling interval while the server starts


def _api_answers(base: str) -> None:
    for path in ("/api/countries", "/api/packages/requests/overall", "/api/packages/requests/recent"):
        r = requests.get(base + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])


def test_a_far_future_event_in_a_live_dataflow_is_dead_lettered_and_changes_nothing_else(broker, topic, tmp_path):
    sink = f"sqlite:///{tmp_path / 'live.db'}"
    flow = live_dataflow(broker.bootstrap, topic, sink, tmp_path / "d", lateness_s=0)
    serve = None
    try:
        first, second = _events(T0, 2000), _events(T0 + 60, 2000)
        publish(broker.bootstrap, topic, first)
        bad = dict(first[0], timestamp=FAR_FUTURE)
        publish(broker.bootstrap, topic, [bad])
        publish(broker.bootstrap, topic, second)
        # events of the next 10-minute block move the watermark past the first (lateness 0): its daily rollups
        # are sealed and stored, as a live stream's are
        after = _events(T0 + 630, 100, span_s=10)
        publish(broker.bootstrap, topic, after)
        started = time.monotonic()
        stats = poll_sink(sink, lambda db: (s := db.stats()) and s.counters.get("consumed") == 4101 and s)
        good = first + second + after
        assert stats.counters.get("counted") == 4100
        assert stats.counters.get("dropped", 0) == 0
        assert stats.counters.get("dead_lettered") == 1
        assert stats.counters.get("dead_lettered.timestamp_in_future") == 1
        assert stats.watermark is None or stats.watermark < time.time()
        expected = expected_windows(good)
        # every window closes once the partitions fall idle
        poll_sink(sink, lambda db: len(db.windows(0, 2**40)) == len(expected))
        assert stored_windows(sink) == expected

        dead = _dead_letters(broker.bootstrap, topic + "-dlq", 1)
        assert len(dead) == 1
        assert orjson.loads(dead[0][0]) == bad
        assert dead[0][1].startswith("timestamp_in_future")

        sealed = first + second
        requests_sealed = sum(e["project"] == "requests" for e in sealed)
        poll_sink(
            sink,
            lambda db: (
                sum(n for *_, n in db.daily("requests", "overall", "2026-11-20", "2026-11-20")) == requests_sealed
            ),
        )
        with open_sink(sink, readonly=True) as db:
            assert sum(n for *_, n in db.daily(None, "overall", "2026-11-20", "2026-11-20")) == len(sealed)
        serve, base = _serve(sink, tmp_path)
        _api_answers(base)
        # retention and the daily summaries run a first time PRUNE_EVERY_S after the store step starts: the dataflow
        # must outlive that pass with every window still stored (the invariant is checked all along)
        while time.monotonic() - started < PRUNE_EVERY_S + 10:
            assert flow.poll() is None, flow.stdout.read()
            assert len(open_sink(sink, readonly=True).windows(0, 2**40)) == len(expected)
            time.sleep(1.0)  # pace of the invariant check over the prune interval
        assert stored_windows(sink) == expected
        _api_answers(base)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGINT)
            serve.communicate(timeout=20)
        flow.send_signal(signal.SIGINT)
        out, _ = flow.communicate(timeout=30)
    assert flow.returncode == 0, out


def test_out_of_range_epochs_and_a_2015_time_in_a_batch_run_are_dead_lettered_and_the_rest_exact(tmp_path):
    good = _events(T0, 1000, span_s=30)
    lines = [orjson.dumps(e) for e in good]
    bad = [
        b'{"timestamp": 1e18, "project": "requests", "country_code": "US"}',
        b'{"timestamp": 1e300, "project": "numpy", "country_code": "US"}',
        b'{"timestamp": "2015-06-01 12:00:00.000000 UTC", "project": "boto3", "country_code": "DE"}',
    ]
    for i, b in enumerate(bad):
        lines.insert(250 + 100 * i, b)
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"\n".join(lines) + b"\n")
    sink = f"sqlite:///{tmp_path / 'batch.db'}"
    summary, _ = batch_run(export, sink, tmp_path / "data")
    assert (summary["counted"], summary["dead_lettered"], summary["dropped"]) == (1000, 3, 0)
    assert stored_windows(sink) == expected_windows(good)
    with open_sink(sink, readonly=True) as db:
        assert sum(n for *_, n in db.daily(None, "overall", "2026-11-20", "2026-11-20")) == 1000
        counters = db.stats().counters
    assert counters["dead_lettered.timestamp_in_future"] == 2
    assert counters["dead_lettered.timestamp_before_2016"] == 1

    # a watermark stored by a version that accepted the far-future event must not break the API either
    db_path = tmp_path / "batch.db"
    with sqlite3.connect(db_path) as con:
        con.execute("UPDATE pipeline_stats SET watermark = ?", (253402300800.0,))
    serve, base = _serve(sink, tmp_path)
    try:
        _api_answers(base)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=20)
