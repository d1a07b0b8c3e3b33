"""A producer whose broker goes away says so in one line of its own (not librdkafka's thousands), and Ctrl-C stops
it within 5 s with the count of events Kafka never acknowledged. A broker stopped for 30 s mid-stream and restarted
empty (the memory-only embedded broker), with a paced producer and a live dataflow running, ends exact: every
event the dataflow had read before it went, plus every event sent (or sent again) after it came back, is counted
once; what the broker had acknowledged and the dataflow not yet read is reported as lost. Truth: the events of the
file the test wrote, and the producer's and the dataflow's own counters at the moment the broker went."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import orjson
from broker_faults_testing import (
    PROJECTS,
    cli,
    log_events,
    metric,
    start_broker,
    start_dataflow,
    stored_downloads,
    summary_table,
    write_events,
)
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from dataflow_testing import Child, tails, wait_until
from pulse_testing import unephemeral_ports

from pypi_pulse.broker import free_port


def test_ctrl_c_of_a_producer_whose_broker_is_gone_stops_within_5_s_and_reports_what_was_undelivered(tmp_path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    write_events(tmp_path / "events.ndjson", 20000, time.time() - 300, span_s=200.0)
    broker = Child("broker", start_broker(port, tmp_path), tmp_path / "broker.log")
    plog = tmp_path / "producer.log"
    producer = cli(
        "produce",
        "--bootstrap-servers",
        bootstrap,
        "--source",
        f"file:{tmp_path / 'events.ndjson'}",
        "--speed",
        "10x",
        "--no-progress",
        "--data-dir",
        str(tmp_path / "p"),
        log=plog,
    )
    producing = Child("producer", producer, plog)
    try:
        time.sleep(2)  # let it send for a while: the scenario, not a wait for a condition
        assert broker.stop() == 0, broker.tail()
        wait_until(
            "the producer's broker_unavailable line",
            lambda: log_events(plog, "kafka.broker_unavailable"),
            30,
            watch=[producing],
        )
        time.sleep(1)  # events pile up while the broker is gone
        producer.send_signal(signal.SIGINT)
        t = time.monotonic()
        producing.exit_code(10, "its Ctrl-C (SIGINT)")
        took = time.monotonic() - t
        undelivered = log_events(plog, "producer.undelivered")
        assert took < 5, f"{took:.1f} s\n{producing.tail()}"
        assert undelivered and undelivered[-1]["events"] > 0, producing.tail()
        assert "undelivered" in plog.read_text().split("producer.undelivered")[-1]  # in the summary table too
    finally:
        if producer.poll() is None:
            producer.kill()
        broker.stop()


A, B, BAD = 600, 2400, 5  # events before the outage; after it (sent while the broker is away and once it is back)
A_S, GAP_S, B_S = 3.0, 8.0, 36.0  # replayed at 1x: B starts in the gap's end and outlasts the 30 s outage
OUTAGE_S = 30.0


def _paced_export(path, start: float) -> None:
    """A events over A_S seconds, nothing for GAP_S (the test stops the broker in that silence, once the dataflow
    has read all of A), then B events over B_S seconds, BAD of them with a project name the dataflow dead-letters."""
    bad_at = {A + (i + 1) * B // (BAD + 1) for i in range(BAD)}
    with open(path, "wb") as f:
        for i in range(A + B):
            t = start + A_S * i / A if i < A else start + A_S + GAP_S + B_S * (i - A) / B
            ts = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            project = "x" * 200 if i in bad_at else PROJECTS[i % len(PROJECTS)]
            f.write(
                orjson.dumps(
                    {
                        "timestamp": ts,
                        "country_code": "US",
                        "project": project,
                        "details": {"installer": {"name": "pip"}, "python": "3.12.1"},
                    }
                )
                + b"\n"
            )


def _dead_letters(bootstrap: str, topic: str) -> list[tuple[bytes, dict]]:
    """Every message of the dead-letter topic, read to the end of each partition (not to the listed end offset,
    which the embedded broker reports too low)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-dead-letters",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out, ended, deadline = [], set(), time.monotonic() + 30
    while len(ended) < len(parts) and time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            if m.error() is None:
                out.append((m.value(), {k: v.decode() for k, v in m.headers() or []}))
            elif m.error().code() == KafkaError._PARTITION_EOF:
                ended.add(m.partition())
    c.close()
    return out


def test_a_broker_stopped_for_30_s_mid_stream_and_restarted_ends_exact(tmp_path):
    port = unephemeral_ports(3)  # the broker comes back on its port 30 s on: nothing else may have taken it
    flow_port, producer_port = port + 1, port + 2
    bootstrap = f"127.0.0.1:{port}"
    export = tmp_path / "paced.ndjson"
    _paced_export(export, time.time() - 300)
    sink = f"sqlite:///{tmp_path / 'pulse.db'}"
    broker = Child("broker", start_broker(port, tmp_path), tmp_path / "broker.log")
    plog, flog = tmp_path / "producer.log", tmp_path / "dataflow.log"
    flow = producer = None
    try:
        # the topics first (a producer with nothing to send creates them), then the dataflow, then the stream
        empty = Child(
            "topic-making producer",
            cli(
                "produce",
                "--bootstrap-servers",
                bootstrap,
                "--source",
                "synthetic",
                "--count",
                "0",
                "--partitions",
                "4",
                "--data-dir",
                str(tmp_path / "p0"),
                log=tmp_path / "topics.log",
            ),
            tmp_path / "topics.log",
        )
        assert empty.exit_code(60, "it started with nothing to send") == 0, empty.tail()
        flow = Child("dataflow", start_dataflow(bootstrap, sink, tmp_path / "flow", flow_port, flog), flog)
        wait_until(
            "the dataflow reading (every partition at its end)",
            lambda: metric(flow_port, "pypi_pulse_dataflow_partition_at_end") == 4,
            90,
            watch=[broker, flow],
        )
        producer_started = time.monotonic()
        producer = Child(
            "producer",
            cli(
                "produce",
                "--bootstrap-servers",
                bootstrap,
                "--source",
                f"file:{export}",
                "--speed",
                "1x",
                "--no-progress",
                "--data-dir",
                str(tmp_path / "p"),
                "--metrics-port",
                str(producer_port),
                log=plog,
            ),
            plog,
        )

        def acked() -> float:
            return metric(producer_port, "pypi_pulse_producer_events_sent_total")

        def consumed() -> float:
            return metric(flow_port, "pypi_pulse_dataflow_events_consumed_total")

        # truth before the outage: the broker is stopped only once the dataflow has read all it acknowledged. A is
        # acknowledged A_S s after the producer's first event (its own start-up, on a loaded machine, has a minute);
        # from then on the dataflow has the GAP_S s before B to read it.
        wait_until(
            "the producer's acknowledgement of all of A", lambda: acked() >= A, 60, watch=[broker, flow, producer]
        )
        a_acked = time.monotonic()

        def read_all_of_a() -> bool:
            done = consumed() >= A
            sent = acked()  # after the read: B must not have been acknowledged before the dataflow read all of A
            assert sent <= A, (
                f"B was acknowledged ({sent:g} events) before the dataflow had read all of A ({consumed():g} of {A})"
                f"\n{tails([flow, producer, broker])}"
            )
            return done

        wait_until("the dataflow reading all of A", read_all_of_a, GAP_S, watch=[broker, flow, producer], since=a_acked)
        a_read_s = time.monotonic() - a_acked
        assert broker.stop() == 0, broker.tail()
        gone = time.monotonic()
        wait_until(
            "the producer saying the broker is away",
            lambda: log_events(plog, "kafka.broker_unavailable"),
            30,
            watch=[flow, producer],
        )
        acked_by_the_broker_that_went = acked()
        wait_until(  # B's first event is due GAP_S s after A's last
            "the producer reading on while the broker is away",
            lambda: metric(producer_port, "pypi_pulse_producer_events_read_total") > A,
            GAP_S + 30,
            watch=[flow, producer],
            since=a_acked,
        )
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - gone)))  # the outage itself: the scenario, not a wait
        consumed_before = consumed()  # nothing can be read while the broker is away
        assert log_events(plog, "producer.undelivered") == [], producer.tail()
        # same port, empty
        broker = Child("broker-again", start_broker(port, tmp_path, "broker-again"), tmp_path / "broker-again.log")
        back = time.monotonic()
        wait_until(
            "the producer's first acknowledgement by the broker that came back",
            lambda: acked() > acked_by_the_broker_that_went,
            60,
            watch=[broker, flow, producer],
        )
        recovered_s = time.monotonic() - back
        assert producer.exit_code(B_S + 60, "the broker came back") == 0, producer.tail()
        finished_s = time.monotonic() - back
        truth = consumed_before + (A + B - acked_by_the_broker_that_went) - BAD  # read before + sent again after
        wait_until(
            f"{truth} downloads stored",
            lambda: stored_downloads(sink) >= truth,
            90,
            watch=[broker, flow],
            describe=lambda: f"stored: {stored_downloads(sink)}",
        )
        counted_s = time.monotonic() - back
        lost = metric(flow_port, "pypi_pulse_dataflow_messages_lost_with_broker_total")
        dead = _dead_letters(bootstrap, "pypi-downloads-dlq")
        assert flow.stop() == 0, flow.tail()
        print(
            f"\nA acknowledged {a_acked - producer_started:.1f} s after the producer started and read "
            f"{a_read_s:.2f} s later; recovered {recovered_s:.1f} s after the broker returned; producer done after {finished_s:.1f} s; "
            f"all counted after {counted_s:.1f} s; lost with the broker {lost:g}; "
            f"acknowledged by it {acked_by_the_broker_that_went:g}, read by the dataflow {consumed_before:g}"
        )

        assert stored_downloads(sink) == truth == A + B - BAD, tails([flow, producer])
        # what the broker acknowledged that the dataflow had not read is reported, and only that
        resets = log_events(flog, "source.offset_reset")
        assert resets and all(r["reason"].startswith("the topic was recreated") for r in resets), flow.tail()
        assert sum(r["lost_messages"] for r in resets) == lost == acked_by_the_broker_that_went - consumed_before
        # the producer accounts for every event: each acknowledged (by one broker or the other), none undelivered
        summary = summary_table(plog, "producer")
        assert summary["read"] == A + B and summary["sent"] == A + B and summary["failed"] == 0, summary
        assert "undelivered" not in summary
        # one line of ours when the broker went, one again 30 s on, not librdkafka's
        assert 1 <= len(log_events(plog, "kafka.broker_unavailable")) <= 2, producer.tail()
        for component in ("dataflow", "dataflow_dead_letters"):  # its consumers, and its dead-letter producer
            assert (
                1 <= len([r for r in log_events(flog, "kafka.broker_unavailable") if r["component"] == component]) <= 2
            ), flow.tail()
        assert "%3|" not in plog.read_text() and "%3|" not in flog.read_text()
        # the dataflow's dead letters made it to the restarted broker
        from_flow = [h for _v, h in dead if h.get("stage") == "dataflow"]
        assert len(from_flow) == BAD and all(h["reason"].startswith("project_name_too_long") for h in from_flow)
    finally:
        for child in (producer, flow):
            if child is not None and child.proc.poll() is None:
                child.proc.kill()
        broker.stop()
