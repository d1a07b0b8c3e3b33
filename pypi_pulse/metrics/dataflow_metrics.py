"""Dataflow health: what this process consumed, how far behind it is, and how its sink writes go.

Consumer lag caveat: Tansu reports a partition's high watermark too low (the start of the last batch + 1; see
known-facts.md). So lag here is 0 once the broker has sent end-of-partition at our position, and otherwise the
broker's cached high watermark minus our next offset, which can undercount by up to one producer batch. Where
the producer's metrics are scraped too, `pypi_pulse_producer_acked_end_offset - pypi_pulse_dataflow_partition_next_offset`
is exact (the recording rule `pypi_pulse:consumer_lag:messages` in deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Optional

from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pypi_pulse.metrics import liveness

CONSUMED = Counter(
    "pypi_pulse_dataflow_events_consumed", "Events read from Kafka by the dataflow.", ["topic", "partition"]
)
SINK_WRITE = Histogram(
    "pypi_pulse_sink_write_duration_seconds",
    "Time of one sink transaction (windows, rollups and counters).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SINK_ERRORS = Counter(
    "pypi_pulse_sink_write_errors",
    "Sink write attempts that failed, each retry counted (a locked or unreachable sink is retried "
    "with backoff until it takes the write; any other error stops the dataflow).",
)
SINK_UNAVAILABLE_SINCE = Gauge(
    "pypi_pulse_sink_unavailable_since_seconds",
    "Wall-clock time since which the dataflow's sink writes fail (locked, down, "
    "restarting) and are being retried; 0 while the sink takes them.",
)
WINDOWS_CLOSED = Counter("pypi_pulse_dataflow_windows_closed", "1-second windows written for the first time.")
CLOSE_DELAY = Histogram(
    "pypi_pulse_dataflow_window_close_delay_seconds",
    "Wall clock minus window end when a window is first written (event time vs wall clock).",
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0),
)
LAST_CLOSED = Gauge(
    "pypi_pulse_dataflow_last_window_closed_timestamp_seconds", "Wall-clock time the newest window was first written."
)
LAST_DELAY = Gauge(
    "pypi_pulse_dataflow_last_window_close_delay_seconds", "Close delay of the newest window first written."
)
SNAPSHOT_BYTES = Gauge(
    "pypi_pulse_dataflow_snapshot_bytes",
    "Size of the last recovery snapshot handed to Bytewax: its worker stands still while storing "
    "it, about 10 ms per MiB (benchmarks/snapshot_stall.py).",
)
SPILLED_BYTES = Gauge(
    "pypi_pulse_dataflow_spilled_state_bytes",
    "Closed state (packed windows and rollup minutes) written once beside the recovery store, "
    "which snapshots refer to instead of copying it (dataflow/spill.py).",
)
ROLLUP_PENDING = Gauge(
    "pypi_pulse_dataflow_rollup_blocks_pending",
    "Sealed 10-minute rollup blocks not yet written to the history (each is merged and written off the worker).",
)

OFFSET_RESETS = Counter(
    "pypi_pulse_dataflow_offset_resets",
    "Partitions found to end before the dataflow's resume offset (the topic was recreated, e.g. by a restart of the "
    "memory-only broker) and resumed at the log's start; what the old log held beyond what was read is lost.",
    ["topic", "partition"],
)
OFFSETS_SKIPPED_BACK = Counter(
    "pypi_pulse_dataflow_offsets_skipped_back",
    "Offsets the dataflow went back by at those resets (resume offset minus the new log's start).",
    ["topic", "partition"],
)

LOST_WITH_BROKER = Counter(
    "pypi_pulse_dataflow_messages_lost_with_broker",
    "Messages a broker had acknowledged that the dataflow had not read yet when the topic was recreated (a restarted "
    "memory-only broker): lost with it.",
    ["topic", "partition"],
)
_partitions: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()
_newest_written = [float("-inf")]


def track_partition(part, topic: str) -> None:
    """Register a live source partition (it needs `partition`, `next_offset`, `at_eof`, `consumer`)."""
    part._metrics_topic = topic
    part._metrics_consumed = CONSUMED.labels(topic, str(part.partition))
    _partitions.add(part)
    OFFSET_RESETS.labels(topic, str(part.partition))  # present from 0, so that increase() sees the first
    OFFSETS_SKIPPED_BACK.labels(topic, str(part.partition))
    LOST_WITH_BROKER.labels(topic, str(part.partition))


def offset_reset(part, skipped_back: int, lost: Optional[int] = None) -> None:
    labels = (part._metrics_topic, str(part.partition))
    OFFSET_RESETS.labels(*labels).inc()
    OFFSETS_SKIPPED_BACK.labels(*labels).inc(max(skipped_back, 0))
    if lost:
        LOST_WITH_BROKER.labels(*labels).inc(lost)


def consumed(part, n: int) -> None:
    """Called each time a partition is polled, with what the poll brought (0 included): the worker loop turned."""
    liveness.DATAFLOW.beat()
    if n:
        part._metrics_consumed.inc(n)


def sink_written(seconds: float, window_starts: Iterable[int], now: float) -> None:
    """Record one sink write; windows newer than any written before are closing for the first time (later
    versions of a window, re-emitted for late events, are older than the newest and not counted again)."""
    SINK_WRITE.observe(seconds)
    with _lock:
        for start in sorted(window_starts):
            if start > _newest_written[0]:
                _newest_written[0] = start
                delay = now - (start + 1)
                CLOSE_DELAY.observe(max(delay, 0.0))
                WINDOWS_CLOSED.inc()
                LAST_DELAY.set(delay)
                LAST_CLOSED.set(now)


class PartitionCollector(Collector):
    def collect(self):
        nxt = GaugeMetricFamily(
            "pypi_pulse_dataflow_partition_next_offset",
            "Next offset the dataflow will read.",
            labels=["topic", "partition"],
        )
        lag = GaugeMetricFamily(
            "pypi_pulse_dataflow_consumer_lag_messages",
            "Messages behind the broker's end of partition (0 at end-of-partition; may undercount on Tansu).",
            labels=["topic", "partition"],
        )
        at_end = GaugeMetricFamily(
            "pypi_pulse_dataflow_partition_at_end",
            "1 when the broker said end-of-partition at our position.",
            labels=["topic", "partition"],
        )
        for p in sorted(list(_partitions), key=lambda p: p.partition):
            labels = [p._metrics_topic, str(p.partition)]
            nxt.add_metric(labels, p.next_offset)
            at_end.add_metric(labels, 1 if p.at_eof else 0)
            if p.at_eof:
                lag.add_metric(labels, 0)
                continue
            try:
                _, high = p.consumer.get_watermark_offsets(TopicPartition(p._metrics_topic, p.partition), cached=True)
            except Exception:  # closed consumer or no fetch yet: no value rather than a wrong one
                continue
            if high is not None and high >= 0:
                lag.add_metric(labels, max(high - p.next_offset, 0))
        yield from (nxt, lag, at_end)


REGISTRY.register(PartitionCollector())
