"""Producer metrics count what the real Publisher did: acknowledged offsets per partition, dead letters by reason."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY


def test_producer_metrics_follow_a_csv_replay_with_an_unreadable_row(broker, topic, tmp_path):
    from pypi_pulse.producer.publisher import Publisher
    from pypi_pulse.producer.replay import replay_file

    rows = ["timestamp,country_code,file.project,file.version,details"]
    rows += [f'2026-11-20 10:00:{i:02d} UTC,DE,requests,2.32.{i},"{{""python"": ""3.12.1""}}"' for i in range(30)]
    rows.insert(10, "2026-11-20 10:00:09 UTC,DE,requests,2.32.0,{not json")  # a record column that is not JSON
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    labels = {"reason": "unreadable_row"}
    before = REGISTRY.get_sample_value("pypi_pulse_producer_events_dead_lettered_total", labels)

    pub = Publisher(broker.bootstrap, topic, topic + "-dlq")
    summary = replay_file(pub, path, None, False, threading.Event(), show_progress=False)
    pub.flush()

    assert (summary.read, summary.sent, summary.dead_lettered) == (31, 30, 1)
    assert REGISTRY.get_sample_value("pypi_pulse_producer_events_dead_lettered_total", labels) == before + 1
    acked = {
        p: REGISTRY.get_sample_value("pypi_pulse_producer_acked_end_offset", {"topic": topic, "partition": str(p)})
        for p in range(4)
    }
    assert {p: v for p, v in acked.items() if v is not None} == {p: float(o) for p, o in pub.end_offsets.items()}
    assert sum(pub.end_offsets.values()) == 30  # one key: all in one partition, offsets 0..29
    del pub  # its Kafka client would outlive the session's broker
