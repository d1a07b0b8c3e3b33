"""Producer health, read from the live Publishers at scrape time.

Delivery callbacks run for every event (hundreds of thousands a second), so they keep their plain integer
counters and this collector turns them into metrics only when Prometheus asks. Dead letters are rare and carry a
reason, so they use an ordinary labelled counter.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pypi_pulse.metrics.reasons import REASONS, reason_label

if TYPE_CHECKING:
    from pypi_pulse.producer.publisher import Publisher

_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()

DEAD_LETTERED = Counter(
    "pypi_pulse_producer_events_dead_lettered",
    "Events the producer could not read, sent to the dead-letter topic.",
    ["reason"],
)
for _reason in REASONS:  # present from the start, so that rate() and alerts see the first dead letter
    DEAD_LETTERED.labels(_reason)


def track_publisher(pub: Publisher) -> None:
    _publishers.add(pub)


def dead_lettered(reason: str) -> None:
    DEAD_LETTERED.labels(reason_label(reason)).inc()


class PublisherCollector(Collector):
    def collect(self):
        pubs = list(_publishers)
        read = CounterMetricFamily("pypi_pulse_producer_events_read", "Events read from the source (produced).")
        sent = CounterMetricFamily("pypi_pulse_producer_events_sent", "Events acknowledged by Kafka.")
        failed = CounterMetricFamily("pypi_pulse_producer_events_failed", "Events Kafka did not acknowledge.")
        queued = GaugeMetricFamily(
            "pypi_pulse_producer_queued_messages", "Messages waiting in the Kafka client's queue for delivery."
        )
        pending = GaugeMetricFamily(
            "pypi_pulse_producer_pending_bytes",
            "Bytes of messages held until Kafka acknowledges them; at producer_max_pending_bytes the source waits.",
        )
        end = GaugeMetricFamily(
            "pypi_pulse_producer_acked_end_offset",
            "Last offset Kafka acknowledged to this producer, plus one (the broker's own end offset can be too low).",
            labels=["topic", "partition"],
        )
        read.add_metric([], sum(p.summary.read for p in pubs))
        sent.add_metric([], sum(p.summary.sent for p in pubs))
        failed.add_metric([], sum(p.summary.failed for p in pubs))
        q = held = 0
        offsets: dict[tuple[str, str], int] = {}
        for p in pubs:
            try:
                q += len(p.producer)
            except RuntimeError:  # closed
                pass
            held += p.delivery.pending_bytes
            for part, off in list(p.end_offsets.items()):
                key = (p.topic, str(part))
                offsets[key] = max(off, offsets.get(key, 0))
        queued.add_metric([], q)
        pending.add_metric([], held)
        for (topic, partition), off in sorted(offsets.items()):
            end.add_metric([topic, partition], off)
        yield from (read, sent, failed, queued, pending, end)


_collector = PublisherCollector()
REGISTRY.register(_collector)
