"""A producer at PyPI's rate whose broker stops acknowledging (SIGSTOP: a broker starved of CPU, in the extreme)
holds at most its byte bound of unacknowledged messages: the source waits instead of growing, and the process's RSS
stays within its working set plus twice the bound (its own copy of each message and the Kafka client's), through
the stall and the catch-up after it. Once the broker runs again (SIGCONT) every event is on the topic exactly once.
Truth: the number of events the test asked for, and the events read back from the topic."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from broker_faults_testing import cli, metric, summary_table
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from dataflow_testing import Child, wait_until
from pulse_testing import run_pulse

from pypi_pulse.broker import EmbeddedBroker, free_port
from pypi_pulse.events import PACK_MAX_BYTES

RATE = 66_000  # PyPI's downloads a second
COUNT = 8 * RATE
BOUND = 8 * 2**20  # producer_max_pending_bytes: reached within seconds of the stall, even at the stalled pace
# How far a producer's RSS at this rate moves above its warm-up peak with nothing held up: the batches, packs and
# compressed record batches being made (up to about 80 MiB here).
WORKING_SET_SLACK = 96 * 2**20
STALL_S = 3.0  # how long the broker stays stopped once the producer holds its bound: the scenario, not a wait


def rss(pid: int) -> int:
    """VmRSS in bytes; 0 once the process has exited (a zombie has none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def events_on_topic(bootstrap: str, topic: str, partitions: int) -> int:
    """Events in the topic, read from its start to the end of every partition: a packed message counts its lines."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"count-{time.time_ns()}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    events, at_end = 0, set()
    deadline = time.monotonic() + 120
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"the topic was not read to its end: {events} events so far"
            for msg in consumer.consume(1000, timeout=1):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    at_end.add(msg.partition())
                    continue
                at_end.discard(msg.partition())
                events += msg.value().count(b"\n") + 1
    finally:
        consumer.close()
    return events


def test_a_producer_whose_broker_stops_holds_at_most_its_byte_bound_then_delivers_every_event_once(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PYPI_PULSE_PRODUCER_MAX_PENDING_BYTES", str(BOUND))
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log").start()
    stopped = False
    mport = free_port()
    plog = tmp_path / "producer.log"
    producer = cli(
        "produce",
        "--bootstrap-servers",
        broker.bootstrap,
        "--source",
        "synthetic",
        "--rate",
        str(RATE),
        "--count",
        str(COUNT),
        "--pack-events",
        "1000",
        "--metrics-port",
        str(mport),
        "--no-progress",
        "--data-dir",
        str(tmp_path / "p"),
        log=plog,
    )
    producing = Child("producer", producer, plog)
    assert broker.proc is not None
    try:
        samples: list[int] = []

        def read() -> float:
            samples.append(rss(producer.pid))
            return metric(mport, "pypi_pulse_producer_events_read_total")

        wait_until("the producer's first events", lambda: read() > 0, 60, watch=[producing])
        warm = len(samples)
        wait_until("two seconds of events sent", lambda: read() >= 2 * RATE, 30, watch=[producing])
        limit = max(samples[warm:]) + 2 * BOUND + WORKING_SET_SLACK

        os.kill(broker.proc.pid, signal.SIGSTOP)
        stopped = True
        held: list[float] = []

        def holding_its_bound() -> bool:
            held.append(metric(mport, "pypi_pulse_producer_pending_bytes"))
            read()
            return held[-1] >= BOUND - PACK_MAX_BYTES or samples[-1] > limit

        wait_until(
            "the producer holding its bound of unacknowledged bytes",
            holding_its_bound,
            60,
            watch=[producing],
            describe=lambda: f"RSS {samples[-1] / 2**20:.0f} MiB, pending {held[-1] / 2**20:.1f} MiB",
        )
        before = read()
        hold_until = time.monotonic() + STALL_S
        while time.monotonic() < hold_until and samples[-1] <= limit:
            held.append(metric(mport, "pypi_pulse_producer_pending_bytes"))
            read()
        waited = read() - before  # events the source made while its bound was full
        os.kill(broker.proc.pid, signal.SIGCONT)
        stopped = False

        wait_until("the producer's exit", lambda: read() >= 0 and producer.poll() is not None, 120)
        peak = max(samples)
        assert peak <= limit, (
            f"RSS {peak / 2**20:.0f} MiB, above {limit / 2**20:.0f} MiB (warm-up peak + twice the "
            f"{BOUND / 2**20:.0f} MiB bound + slack); pending bytes reached {max(held) / 2**20:.1f} MiB"
        )
        assert max(held) <= BOUND, f"{max(held)} bytes held, above the bound of {BOUND}"
        # at most the batch that found the bound full (a tick of events, at up to 1.34 x the mean rate)
        assert waited <= 2 * RATE * 0.05, f"the source made {waited:.0f} events while its bound was full"
        assert producer.returncode == 0, producing.tail()
        summary = summary_table(plog, "producer")
        assert summary["read"] == summary["sent"] == COUNT and summary["failed"] == 0, summary
        assert events_on_topic(broker.bootstrap, "pypi-downloads", 4) == COUNT
    finally:
        if stopped:
            os.kill(broker.proc.pid, signal.SIGCONT)
        if producer.poll() is None:
            producer.kill()
        broker.stop()


def test_a_byte_bound_below_two_packs_is_refused_in_one_line(tmp_path):
    proc, _mark = run_pulse(
        "produce",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--data-dir",
        str(tmp_path),
        env={"PYPI_PULSE_PRODUCER_MAX_PENDING_BYTES": "64KiB"},
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert (
        lines[0].startswith("error: invalid producer_max_pending_bytes")
        and "PYPI_PULSE_PRODUCER_MAX_PENDING_BYTES" in lines[0]
    )
