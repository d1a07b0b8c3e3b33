"""A Kafka message with no value (a tombstone, which any client of a shared topic may write) is dead-lettered with
its reason and changes nothing else: the dataflow keeps running and the events around it are counted exactly.
Truth is computed here from the events sent."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer, TopicPartition
from dataflow_testing import live_dataflow
from pulse_testing import expected_windows, poll_sink, publish, stored_windows

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).timestamp()


def _events(start: float, n: int) -> list[dict]:
    return [
        {
            "timestamp": datetime.fromtimestamp(start + 20.0 * i / n, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
            "country_code": ["US", "DE", None][i % 3],
            "project": ["requests", "numpy", "boto3"][i % 3],
        }
        for i in range(n)
    ]


def _tombstone(bootstrap: str, topic: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, value=None, key=b"requests", partition=0)
    assert p.flush(10) == 0


def _dead_letter_reasons(bootstrap: str, topic: str, timeout: float = 30.0) -> list[str]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{time.monotonic_ns()}", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                return [dict(m.headers())["reason"].decode()]
        return []
    finally:
        c.close()


def test_a_message_without_a_value_is_dead_lettered_and_the_events_around_it_counted_exactly(broker, topic, tmp_path):
    sink = f"sqlite:///{tmp_path / 'live.db'}"
    flow = live_dataflow(broker.bootstrap, topic, sink, tmp_path / "d", lateness_s=0)
    try:
        before, after = _events(T0, 600), _events(T0 + 20, 600)
        publish(broker.bootstrap, topic, before)
        _tombstone(broker.bootstrap, topic)
        publish(broker.bootstrap, topic, after)
        try:
            stats = poll_sink(
                sink, lambda db: (s := db.stats()) and s.counters.get("consumed") == 1201 and s, timeout=60
            )
        except AssertionError:
            flow.send_signal(signal.SIGINT)
            raise AssertionError(
                f"the dataflow did not count the 1,201 messages: {flow.communicate(timeout=30)[0][-3000:]}"
            ) from None
        assert flow.poll() is None
        assert stats.counters.get("counted") == 1200
        assert stats.counters.get("dead_lettered") == 1
        expected = expected_windows(before + after)
        poll_sink(sink, lambda db: len(db.windows(0, 2**40)) == len(expected), timeout=60)
        assert stored_windows(sink) == expected
        reasons = _dead_letter_reasons(broker.bootstrap, topic + "-dlq")
        assert len(reasons) == 1 and reasons[0], reasons
    finally:
        flow.send_signal(signal.SIGINT)
        out, _ = flow.communicate(timeout=30)
    assert flow.returncode == 0, out
