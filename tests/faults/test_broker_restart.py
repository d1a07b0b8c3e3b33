"""The embedded broker is memory-only: after it restarts, the topic is a new, shorter log. A dataflow with recovery
on (resumed from its snapshot, or running all along) must notice that its offsets lie beyond the new log's end,
say so with the numbers, count it, and read the new events from the log's start: every event produced after the
restart is counted exactly once. Truth: the number of events in the files the test wrote."""

from __future__ import annotations

import time

from broker_faults_testing import (
    log_events,
    metric,
    produce_file,
    start_broker,
    start_dataflow,
    stop,
    stored_downloads,
    wait_for,
    write_events,
)

from pypi_pulse.broker import free_port

N, M = 3000, 1000  # M < N: on every partition the new log ends before the old offsets


def _setup(tmp_path):
    port, mport = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    now = time.time()
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    n = write_events(first, N, now - 120)
    m = write_events(second, M, now - 60)
    return port, mport, bootstrap, first, second, n, m, f"sqlite:///{tmp_path / 'pulse.db'}"


def test_a_resumed_dataflow_reads_the_restarted_brokers_new_log_from_its_start(tmp_path):
    port, mport, bootstrap, first, second, n, m, sink = _setup(tmp_path)
    broker = start_broker(port, tmp_path)
    flow_log = tmp_path / "dataflow.log"
    try:
        produce_file(bootstrap, first, tmp_path)
        flow = start_dataflow(bootstrap, sink, tmp_path / "flow", mport, flow_log)
        wait_for(lambda: stored_downloads(sink) == n, 120, f"{n} events counted before the restart")
        assert stop(flow) == 0, flow_log.read_text()[-3000:]
        # a resume on the same, healthy broker is no reset
        flow = start_dataflow(bootstrap, sink, tmp_path / "flow", mport, flow_log)
        wait_for(
            lambda: metric(mport, "pypi_pulse_dataflow_partition_at_end") == 4, 60, "every partition read to its end"
        )
        assert stop(flow) == 0
        assert log_events(flow_log, "source.offset_reset") == []

        assert stop(broker) == 0
        broker = start_broker(port, tmp_path, "broker-again")  # same port, empty
        produce_file(bootstrap, second, tmp_path)
        flow = start_dataflow(bootstrap, sink, tmp_path / "flow", mport, flow_log)
        wait_for(lambda: stored_downloads(sink) >= n + m, 120, f"{n + m} events counted after the restart")
        resets = metric(mport, "pypi_pulse_dataflow_offset_resets_total")
        skipped = metric(mport, "pypi_pulse_dataflow_offsets_skipped_back_total")
        assert stop(flow) == 0
        assert stored_downloads(sink) == n + m
        logged = log_events(flow_log, "source.offset_reset")
        # one per partition that held events (keys put them on three or four of the four): each was beyond the new end
        assert logged and resets == len(logged)
        assert all(
            r["level"] == "error" and r["resume_offset"] > r["log_end"] >= 0 and r["log_start"] == 0 for r in logged
        )
        assert sum(r["resume_offset"] for r in logged) == n == skipped  # one event per message
        assert sum(r["log_end"] for r in logged) == m
    finally:
        stop(broker)


def test_a_running_dataflow_reads_the_restarted_brokers_new_log_from_its_start(tmp_path):
    port, mport, bootstrap, first, second, n, m, sink = _setup(tmp_path)
    broker = start_broker(port, tmp_path)
    flow_log = tmp_path / "dataflow.log"
    flow = None
    try:
        produce_file(bootstrap, first, tmp_path)
        flow = start_dataflow(bootstrap, sink, tmp_path / "flow", mport, flow_log)
        wait_for(lambda: stored_downloads(sink) == n, 120, f"{n} events counted before the restart")
        assert stop(broker) == 0
        broker = start_broker(port, tmp_path, "broker-again")
        produce_file(bootstrap, second, tmp_path)
        wait_for(lambda: stored_downloads(sink) >= n + m, 120, f"{n + m} events counted after the restart")
        resets = metric(mport, "pypi_pulse_dataflow_offset_resets_total")
        assert stop(flow) == 0
        flow = None
        assert stored_downloads(sink) == n + m
        logged = log_events(flow_log, "source.offset_reset")
        assert logged and resets == len(logged) and sum(r["resume_offset"] for r in logged) == n
        unavailable = log_events(flow_log, "kafka.broker_unavailable")
        assert 1 <= len(unavailable) <= 2, unavailable  # one line of ours, not librdkafka's thousands
    finally:
        if flow is not None:
            stop(flow)
        stop(broker)


def test_a_resumed_dataflow_tells_a_new_log_already_longer_than_its_offsets_by_the_topics_id(tmp_path):
    """Offsets alone cannot tell this new log from the old one: the snapshot's topic id does."""
    port, mport, bootstrap, first, _second, n, _m, sink = _setup(tmp_path)
    longer = tmp_path / "longer.ndjson"
    big = write_events(longer, 2 * N, time.time() - 60)  # on every partition the new log passes the old offsets
    broker = start_broker(port, tmp_path)
    flow_log = tmp_path / "dataflow.log"
    try:
        produce_file(bootstrap, first, tmp_path)
        flow = start_dataflow(bootstrap, sink, tmp_path / "flow", mport, flow_log)
        wait_for(lambda: stored_downloads(sink) == n, 120, f"{n} events counted before the restart")
        assert stop(flow) == 0

        assert stop(broker) == 0
        broker = start_broker(port, tmp_path, "broker-again")  # same port, empty
        produce_file(bootstrap, longer, tmp_path)
        flow = start_dataflow(bootstrap, sink, tmp_path / "flow", mport, flow_log)
        wait_for(lambda: stored_downloads(sink) >= n + big, 120, f"{n + big} events counted after the restart")
        resets = metric(mport, "pypi_pulse_dataflow_offset_resets_total")
        assert stop(flow) == 0
        assert stored_downloads(sink) == n + big
        logged = log_events(flow_log, "source.offset_reset")
        assert logged and resets == len(logged)
        assert all(
            r["level"] == "error" and "id changed" in r["reason"] and r["log_end"] > r["resume_offset"] for r in logged
        )
        assert sum(r["resume_offset"] for r in logged) == n
    finally:
        stop(broker)
