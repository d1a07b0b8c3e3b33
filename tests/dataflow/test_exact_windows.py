"""Per-second windows are exact however events arrive: out of order, across partitions, at full replay speed."""

from __future__ import annotations

import json
import random
import subprocess

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from pulse_testing import expected_windows, publish, run_flow, stored_windows

from pypi_pulse import command_lines
from pypi_pulse.events import format_bigquery_ts
from pypi_pulse.producer.synthetic import SyntheticSource

T0 = 1795219170  # 2026-11-20T23:59:30Z: the export crosses a UTC midnight


def _events(n: int, seed: int) -> list[dict]:
    """Realistic rows over ~60 s, with every timestamp form, null countries/details and unnormalised names."""
    rng = random.Random(seed)
    src = SyntheticSource(seed=seed)
    rows = src.events(sorted(T0 + rng.random() * 60 for _ in range(n)))
    for i, row in enumerate(rows):
        t = T0 + (i / n) * 60 + rng.random() * 0.01
        kind = i % 7
        if kind == 1:
            row["timestamp"] = t  # epoch seconds
        elif kind == 2:
            row["timestamp"] = int(t * 1_000_000)  # epoch microseconds
        elif kind == 3:
            row["timestamp"] = format_bigquery_ts(t).replace(" UTC", "Z").replace(" ", "T")
        elif kind == 4:
            row["timestamp"] = format_bigquery_ts(t).replace(" UTC", "+00:00").replace(" ", "T")
        if i % 50 == 0:
            row["country_code"] = None
        if i % 97 == 0:
            row["details"] = None
        if i % 13 == 0:
            row["project"] = row["project"].upper().replace("-", "_")  # `Zope_Interface` style
    # out of order: shuffle within blocks spanning several seconds
    for start in range(0, n, 2000):
        block = rows[start : start + 2000]
        rng.shuffle(block)
        rows[start : start + 2000] = block
    return rows


def test_batch_run_of_a_shuffled_export_at_max_speed_is_exact(tmp_path):
    rows = _events(30_000, seed=7)
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    sink = f"sqlite:///{tmp_path / 'run.db'}"
    proc = subprocess.run(
        command_lines.replay(export, sink, tmp_path / "data", "--json"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["events_read"] == summary["sent"] == summary["counted"] == len(rows)
    assert summary["dead_lettered"] == 0 and summary["dropped"] == 0
    expected = expected_windows(rows)
    stored = stored_windows(sink)
    assert stored.keys() == expected.keys()
    for sec in expected:
        assert stored[sec] == expected[sec], sec


def test_windows_command_prints_the_shared_json_shape(tmp_path, broker, topic):
    rows = _events(3_000, seed=3)
    sink = f"sqlite:///{tmp_path / 'w.db'}"
    run_flow(broker.bootstrap, topic, sink, end_offsets=publish(broker.bootstrap, topic, rows))
    proc = subprocess.run(
        command_lines.cli(
            "windows", "--sink", sink, "--start", "2026-11-20T23:59:50Z", "--end", "2026-11-21T00:00:10Z"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [w["start"] for w in lines] == [f"2026-11-20T23:59:{s}Z" for s in range(50, 60)] + [
        f"2026-11-21T00:00:0{s}Z" for s in range(10)
    ]
    expected = expected_windows(rows)
    for w in lines:
        assert set(w) == {"start", "downloads", "unique_packages", "countries", "top"}
        sec = int(__import__("datetime").datetime.fromisoformat(w["start"].replace("Z", "+00:00")).timestamp())
        assert w["downloads"] == expected[sec]["downloads"]
        assert w["countries"] == expected[sec]["countries"]
        assert [[t["project"], t["downloads"]] for t in w["top"]] == expected[sec]["top"]


@pytest.mark.parametrize("pack", [1, 250], ids=["one event per message", "packed messages"])
def test_malformed_events_go_to_the_dead_letter_topic_with_reasons(tmp_path, broker, topic, pack):
    good = _events(2_000, seed=11)
    bad = [
        (b"{not json at all", "invalid event"),
        (b'{"timestamp": "2026-11-20 23:59:50 UTC", "country_code": "US"}', "missing project"),
        (b'{"project": "numpy", "country_code": "US"}', "missing timestamp"),
        (b'{"timestamp": "the day after tomorrow", "project": "numpy"}', "unparseable timestamp"),
        (b'{"timestamp": "2026-11-20 23:59:50 UTC", "project": 42}', "invalid event"),
        (b"[1, 2, 3]", "invalid event"),
    ]
    mixed: list = list(good)
    for i, (raw, _) in enumerate(bad):
        mixed.insert(i * 300, raw)
    sink = f"sqlite:///{tmp_path / 'dlq.db'}"
    ends = publish(broker.bootstrap, topic, mixed, pack=pack)
    run_flow(broker.bootstrap, topic, sink, end_offsets=ends)

    assert stored_windows(sink) == expected_windows(good)  # bad input never disturbs the counts
    from pypi_pulse.sink.base import open_sink

    with open_sink(sink, readonly=True) as db:
        counters = db.stats().counters
    assert counters["consumed"] == len(mixed)
    assert counters["counted"] == len(good)
    assert counters["dead_lettered"] == len(bad)
    if pack > 1:  # the events really travelled packed: far fewer messages than events
        assert sum(ends.values()) < len(mixed) // 100

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "dlq-check", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic + "-dlq", 0, 0)])
    got = {}
    while True:
        m = consumer.poll(10)
        assert m is not None, "dead-letter topic did not deliver"
        if m.error():
            break
        got[m.value()] = dict(m.headers())["reason"].decode()
    consumer.close()
    assert set(got) == {raw for raw, _ in bad}  # the original bytes, byte for byte
    for raw, reason in bad:
        assert reason in got[raw], (raw, got[raw])
