"""A producer whose broker goes away says so in one line of its own (not librdkafka's thousands), and Ctrl-C stops
it within 5 s with the count of events Kafka never acknowledged."""

from __future__ import annotations

import signal
import time

from broker_faults_testing import cli, log_events, start_broker, stop, wait_for, write_events
from pypi_pulse.broker import free_port


def test_ctrl_c_of_a_producer_whose_broker_is_gone_stops_within_5_s_and_reports_what_was_undelivered(tmp_path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    write_events(tmp_path / "events.ndjson", 20000, time.time() - 300, span_s=200.0)
    broker = start_broker(port, tmp_path)
    plog = tmp_path / "producer.log"
    producer = cli("produce", "--bootstrap-servers", bootstrap, "--source", f"file:{tmp_path / 'events.ndjson'}",
                   "--speed", "10x", "--no-progress", "--data-dir", str(tmp_path / "p"), log=plog)
    try:
        time.sleep(2)  # let it send for a while: the scenario, not a wait for a condition
        assert stop(broker) == 0
        wait_for(lambda: log_events(plog, "kafka.broker_unavailable"), 30, "the producer's broker_unavailable line")
        time.sleep(1)  # events pile up while the broker is gone
        producer.send_signal(signal.SIGINT)
        t = time.monotonic()
        producer.wait(10)
        took = time.monotonic() - t
        undelivered = log_events(plog, "producer.undelivered")
        assert took < 5, took
        assert undelivered and undelivered[-1]["events"] > 0
        assert "undelivered" in plog.read_text().split("producer.undelivered")[-1]  # in the summary table too
    finally:
        if producer.poll() is None:
            producer.kill()
        stop(broker)
