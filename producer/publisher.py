"""Publishing to Kafka with the guarantees a replay needs: idempotent, acknowledged, bounded in memory.

Delivery reports are counted and the last acknowledged offset of every partition is kept: batch mode uses those
exact offsets to know when the dataflow has read everything (the broker's reported end offsets can be too low).
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from confluent_kafka import KafkaError, Producer

from pypi_pulse.bounds import DEFAULT_MAX_EVENT_BYTES, event_size_reason
from pypi_pulse.config import DEFAULT_COMPRESSION, DEFAULT_LINGER_MS
from pypi_pulse.errors import UserError
from pypi_pulse.events import PACK_HEADER, PACK_MAX_BYTES
from pypi_pulse.metrics import producer_metrics
from pypi_pulse.producer.delivery import Delivery, DeliveryOptions


@dataclass
class Summary:
    read: int = 0
    sent: int = 0
    failed: int = 0
    dead_lettered: int = 0
    end_offsets: dict = field(default_factory=dict)  # partition -> last acknowledged offset + 1
    undelivered: int = 0  # events given up on when stopped (Ctrl-C) before Kafka acknowledged them
    input_error: Optional[str] = None  # the input ended early (a truncated gzip): what was read before is sent

    def as_dict(self) -> dict:
        out: dict[str, object] = {
            "read": self.read,
            "sent": self.sent,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            **({"undelivered": self.undelivered} if self.undelivered else {}),
        }
        if self.input_error is not None:
            out["input_error"] = self.input_error
        return out


class Publisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        dlq_topic: str,
        *,
        max_queued: int = 200_000,
        linger_ms: int = DEFAULT_LINGER_MS,
        compression: str = DEFAULT_COMPRESSION,
        delivery: Optional[DeliveryOptions] = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ):
        self.max_event_bytes = max_event_bytes  # larger events are dead-lettered, never refused by Kafka
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.summary = Summary()
        self.end_offsets: dict[int, int] = {}  # partition -> last acknowledged offset + 1 (data topic)
        self._lock = threading.Lock()
        self._partitions: Optional[int] = None
        self._next_partition = 0
        self.delivery = Delivery(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "batch.num.messages": 10_000,
                "batch.size": 4 * 1024 * 1024,
                "queue.buffering.max.messages": max_queued,
                "compression.type": compression,
            },
            delivery or DeliveryOptions(),  # its byte bound sets queue.buffering.max.kbytes
            topics=(topic, dlq_topic),
        )
        producer_metrics.track_publisher(self)

    @property
    def producer(self) -> Producer:
        """The current Kafka client (Delivery replaces it when it cannot recover)."""
        return self.delivery.producer

    def stop_on(self, stop: threading.Event) -> None:
        """Once `stop` is set (Ctrl-C), no wait for Kafka outlasts producer_stop_seconds (Delivery)."""
        self.delivery.stop = stop

    def _on_delivery(self, err: Optional[KafkaError], msg) -> None:
        self._delivered(err, msg, 1)

    def _delivered(self, err: Optional[KafkaError], msg, events: int) -> None:
        if err is not None:
            self.summary.failed += events
            return
        self.summary.sent += events
        p, o = msg.partition(), msg.offset()
        if o + 1 > self.end_offsets.get(p, 0):
            self.end_offsets[p] = o + 1

    def send_packed(self, values: list[bytes], max_events: int) -> None:
        """Queue events as packed messages of up to `max_events` lines (PACK_HEADER), each to the next partition
        in turn: a pack has no single project to key it by, and spreading packs evenly keeps every partition's
        watermark moving. A value holding a newline cannot share a message and goes alone, unpacked."""
        values = self._within_size(values)
        if self._partitions is None:
            meta = self.producer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            self._partitions = max(1, len(meta.partitions) if meta is not None else 1)
        # a small batch (a live tick) is shared by every partition, so that no partition waits a turn and holds
        # the watermark back
        per_pack = max(1, min(max_events, -(-len(values) // self._partitions)))
        start = 0
        for alone in [i for i, value in enumerate(values) if b"\n" in value] + [len(values)]:
            self._cut_into_packs(values[start:alone], per_pack)  # the events between two that go alone
            if alone < len(values):
                self.send(values[alone], None)
            start = alone + 1
        self.delivery.poll(0)  # serve delivery reports: until then librdkafka keeps every delivered message

    def _cut_into_packs(self, values: list[bytes], per_pack: int) -> None:
        """Packs of one-line events: each takes events while it holds fewer than `per_pack` and stays within
        PACK_MAX_BYTES joined (an event larger than that goes alone), found with C-level sums and bisection instead
        of a Python step per event (a file replay sends hundreds of thousands of events a second)."""
        ends = list(itertools.accumulate(map(len, values), lambda total, n: total + n + 1, initial=0))
        i, n = 0, len(values)
        while i < n:
            j = min(i + per_pack, bisect.bisect_right(ends, ends[i] + PACK_MAX_BYTES + 1, i + 1) - 1)
            j = max(j, i + 1)  # an event larger than a pack still goes, alone
            self._produce_pack(values[i:j])
            i = j

    def _produce_pack(self, pack: list[bytes]) -> None:
        assert self._partitions is not None  # known once the first pack is cut
        partition = self._next_partition
        self._next_partition = (partition + 1) % self._partitions
        n = len(pack)
        self._produce(
            self.topic,
            b"\n".join(pack),
            partition=partition,
            headers=[PACK_HEADER] if n > 1 else None,
            on_delivery=(lambda err, msg: self._delivered(err, msg, n)) if n > 1 else self._on_delivery,
            events=n,
        )

    def _within_size(self, values: list[bytes]) -> list[bytes]:
        """The events of a list that fit `max_event_bytes`; the others are dead-lettered. One C-level pass."""
        limit = self.max_event_bytes
        if not values or max(map(len, values)) <= limit:
            return values
        kept = []
        for value in values:
            if len(value) > limit:
                self.dead_letter(value, event_size_reason(len(value), limit))
            else:
                kept.append(value)
        return kept

    def send(self, value: bytes, key: Optional[bytes], timestamp_ms: Optional[int] = None) -> None:
        """Queue one event."""
        if len(value) > self.max_event_bytes:
            self.dead_letter(value, event_size_reason(len(value), self.max_event_bytes))
            return
        if timestamp_ms is None:
            self._produce(self.topic, value, key, on_delivery=self._on_delivery)
        else:
            self._produce(self.topic, value, key, on_delivery=self._on_delivery, timestamp=timestamp_ms)

    def _produce(self, topic: str, value: bytes, *args, **kwargs) -> None:
        """When the local queue is full, wait for deliveries instead of growing (backpressure); kept until Kafka
        acknowledges it, to be sent again by a new client if need be (Delivery)."""
        self.delivery.produce(topic, value, *args, **kwargs)

    def send_many(self, items: Sequence[tuple[bytes, Optional[bytes]]]) -> None:
        produce = self.delivery.produce  # waits while the queue is full
        topic, cb = self.topic, self._on_delivery
        for value, key in items:
            if len(value) > self.max_event_bytes:
                self.dead_letter(value, event_size_reason(len(value), self.max_event_bytes))
                continue
            produce(topic, value, key, on_delivery=cb)
        self.delivery.poll(0)

    def dead_letter(self, original: bytes, reason: str) -> None:
        """An event larger than `max_event_bytes` keeps its first `max_event_bytes` bytes, marked by an
        `original-bytes` header: whole, it could exceed what Kafka accepts on the dead-letter topic too."""
        self.summary.dead_lettered += 1
        producer_metrics.dead_lettered(reason)
        headers = [("reason", reason.encode()), ("stage", b"producer")]
        if len(original) > self.max_event_bytes:
            headers.append(("original-bytes", str(len(original)).encode()))
            original = original[: self.max_event_bytes]
        self._produce(self.dlq_topic, original, headers=headers)

    def poll(self) -> None:
        self.delivery.poll(0)

    def wait(self, timeout: float) -> None:
        """Idle for up to `timeout` s while serving delivery reports (a paced source between events)."""
        self.delivery.poll(timeout)

    def flush(self, timeout: float = 60.0) -> None:
        remaining = self.delivery.flush(timeout)
        self.summary.undelivered = self.delivery.undelivered
        if remaining and not self.delivery.stop.is_set():
            raise UserError(
                f"{remaining} events were not acknowledged by Kafka within {timeout:.0f}s; is the broker up?"
            )
