"""The producer's link to Kafka, kept alive across broker outages and restarts without losing what was not
acknowledged.

librdkafka already buffers and retries while a broker is away; what it cannot survive is a broker that comes back
without its state: the embedded broker is memory-only, and after a restart it answers the idempotent producer's
every request with UnknownProducerId, forever. So every message queued is also kept here until Kafka acknowledges
it; when the broker answers again but nothing is acknowledged for `stall_s` (or librdkafka reports a fatal
error), the client is purged and replaced and what it held is sent again, in order. An acknowledged message is
never sent twice; a message in flight when the client is replaced may be, on a broker that kept it (a real Kafka,
a stall of `stall_s` while it answered), which the memory-only broker cannot.

What is kept here is bounded by count (librdkafka's queue.buffering.max.messages) and by bytes (`max_pending_bytes`,
librdkafka's queue.buffering.max.kbytes set to the same), including the messages waiting for their topic to be
recreated: when either is full, the source waits. The count alone bounds nothing: a packed message holds up to
`pack_events` events (1,000 on pypi-pulse's own topics), and librdkafka keeps a copy of each message it has not sent
besides the one kept here. A set `stop` (Ctrl-C) ends every wait: what is still unacknowledged after `stop_s` is
purged and counted as undelivered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from pypi_pulse.config import (
    DEFAULT_BROKER_OUTAGE_LOG_S,
    DEFAULT_PRODUCER_MAX_PENDING_BYTES,
    DEFAULT_PRODUCER_STALL_S,
    DEFAULT_PRODUCER_STOP_S,
)
from pypi_pulse.kafka_health import BrokerHealth
from pypi_pulse.metrics import liveness

log = structlog.get_logger(__name__)
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# failures of a broker that came back without our topics: kept and sent again once the topics exist
RESEND = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION})


@dataclass(frozen=True)
class DeliveryOptions:
    outage_log_s: float = DEFAULT_BROKER_OUTAGE_LOG_S
    stall_s: float = DEFAULT_PRODUCER_STALL_S
    stop_s: float = DEFAULT_PRODUCER_STOP_S
    max_pending_bytes: int = DEFAULT_PRODUCER_MAX_PENDING_BYTES


class Delivery:
    def __init__(
        self,
        config: dict,
        options: DeliveryOptions = DeliveryOptions(),
        topics: tuple[str, ...] = (),
        component: str = "producer",
    ):
        self.options = options
        self.health = BrokerHealth(component, config.get("bootstrap.servers", ""), options.outage_log_s)
        self.max_pending = int(config.get("queue.buffering.max.messages", 100_000))
        self.config = {
            **config,
            **self.health.client_config(),
            "message.timeout.ms": 0,  # wait out any outage; a stop gives up instead
            "reconnect.backoff.max.ms": 1000,  # notice a returning broker within a second, not ten
            # a restarted embedded broker would otherwise create our topics on our first metadata request, with its
            # own partition count; we create them again with theirs (_recreate_topics)
            "allow.auto.create.topics": False,
            # librdkafka's queue holds a part of what is kept here (it counts values only): it never binds first
            "queue.buffering.max.kbytes": max(1, options.max_pending_bytes // 1024),
        }
        self.producer = Producer(self.config)
        self.stop = threading.Event()  # set by the command's Ctrl-C handler (Publisher.stop_on)
        self.topics = topics
        self.partition_counts: dict[str, int] = {}  # what to recreate on a broker that came back empty
        self.pending: dict[
            int, tuple
        ] = {}  # seq -> (topic, value, key, partition, on_delivery, timestamp, headers, events)
        self.pending_bytes = 0  # of the values and keys in `pending`
        self._seq = 0
        self.undelivered = 0  # events given up on at a stop
        self.resend: list[int] = []  # refused for a missing topic: sent again once it exists
        self.replacements = 0
        self.last_progress = time.monotonic()
        self.answering_since: Optional[float] = None
        self._next_watch = 0.0

    # --- sending ------------------------------------------------------------------------------------------------
    def produce(
        self,
        topic: str,
        value: bytes,
        key: Optional[bytes] = None,
        *,
        partition: int = -1,
        on_delivery=None,
        timestamp: int = 0,
        headers=None,
        events: int = 1,
    ) -> bool:
        """Queue one message; while the queue is full, wait (serving deliveries). False if stopped meanwhile.
        A message is always taken when nothing else waits, whatever its size."""
        size = len(value) + (len(key) if key else 0)
        # messages refused for a missing topic wait here, not in librdkafka
        while self.pending and (
            len(self.pending) >= self.max_pending or self.pending_bytes + size > self.options.max_pending_bytes
        ):
            if self.stop.is_set():
                self.undelivered += events
                return False
            self.poll(0.05)
        seq = self._seq = self._seq + 1
        if not self.pending:
            self.last_progress = time.monotonic()  # a stall is measured from the first message waiting
        self.pending[seq] = (topic, value, key, partition, on_delivery, timestamp, headers, events)
        self.pending_bytes += size
        while True:
            try:
                self._send(seq)
                return True
            except KafkaException as exc:  # the client knows the topic is missing: sent once it is recreated
                if exc.args[0].code() not in RESEND:
                    raise
                self.resend.append(seq)
                return True
            except BufferError:
                if self.stop.is_set():
                    self._forget(seq)
                    self.undelivered += events
                    return False
                self.poll(0.05)

    def _send(self, seq: int) -> None:
        topic, value, key, partition, _cb, timestamp, headers, _events = self.pending[seq]
        self.producer.produce(
            topic,
            value,
            key,
            partition=partition,
            timestamp=timestamp,
            headers=headers,
            on_delivery=lambda err, msg: self._done(seq, err, msg),
        )

    def _done(self, seq: int, err: Optional[KafkaError], msg) -> None:
        if err is not None and err.code() in PURGED:
            return
        if err is not None and err.code() in RESEND and seq in self.pending:
            self.resend.append(seq)
            return  # still pending: sent again by the replacement client, or counted as undelivered at a stop
        record = self._forget(seq)
        if record is None:
            return
        if err is None:
            self.last_progress = time.monotonic()
            self.health.back()
        callback = record[4]
        if callback is not None:
            callback(err, msg)

    def _forget(self, seq: int) -> Optional[tuple]:
        record = self.pending.pop(seq, None)
        if record is not None:
            self.pending_bytes -= len(record[1]) + (len(record[2]) if record[2] else 0)
        return record

    # --- serving ------------------------------------------------------------------------------------------------
    def poll(self, timeout: float = 0) -> None:
        liveness.PRODUCER.beat()  # every wait of the producer's loop comes here: its /healthz
        self.producer.poll(timeout)
        if time.monotonic() >= self._next_watch:
            self._next_watch = time.monotonic() + 0.5
            self._watch()

    def _watch(self) -> None:
        """Say that the broker is away; replace a client that cannot recover on its own."""
        self.health.tick()
        if self.stop.is_set():  # giving up: no probe of the broker (each can wait a second) delays the stop
            return
        if len(self.partition_counts) < len(self.topics) and not self.health.is_away:
            self._learn_topics()
        if self.health.fatal is not None:
            self._replace(f"fatal error: {self.health.fatal.str()}")
            return
        if not self.resend and (
            not self.pending or time.monotonic() - self.last_progress < min(1.0, self.options.stall_s)
        ):
            self.answering_since = None
            return
        try:  # metadata goes through even when produce requests are refused
            topics = self.producer.list_topics(timeout=1).topics
        except KafkaException as exc:
            self.answering_since = None
            self.health.away(str(exc))
            return
        if self._recreate_topics(topics):
            # the broker came back without our topics, so without anything we sent: nothing can be duplicated
            self._replace("the broker came back empty (restarted)")
            return
        if self.resend:
            again, self.resend = sorted(self.resend), []
            for i, seq in enumerate(again):
                try:
                    if seq in self.pending:
                        self._send(seq)
                except (KafkaException, BufferError):  # not yet: the rest waits for the next watch, in order
                    self.resend = again[i:]
                    break
            return
        now = time.monotonic()
        if self.answering_since is None:
            self.answering_since = now
        elif now - self.answering_since >= self.options.stall_s:
            self._replace(f"the broker answers but acknowledged nothing for {self.options.stall_s:g} s")

    def _learn_topics(self) -> None:
        try:
            existing = self.producer.list_topics(timeout=1).topics
        except KafkaException:
            return
        for t in self.topics:
            if t in existing and existing[t].error is None and existing[t].partitions:
                self.partition_counts.setdefault(t, len(existing[t].partitions))

    def _recreate_topics(self, existing) -> bool:
        """A memory-only broker restarts without our topics: create them again, with the partitions they had."""
        missing = {t: n for t, n in self.partition_counts.items() if t not in existing or existing[t].error is not None}
        if missing:
            from pypi_pulse.broker import ensure_topics

            try:
                ensure_topics(self.config["bootstrap.servers"], missing, timeout=5)
                log.warning("producer.topics_recreated", component=self.health.component, topics=sorted(missing))
                return True
            except Exception as exc:  # the next watch tries again
                log.warning("producer.topics_not_recreated", topics=sorted(missing), error=str(exc))
        return False

    def _replace(self, why: str) -> None:
        old = self.producer
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)  # acknowledgements that arrived before the purge count; purged messages stay pending
        self.producer = Producer(self.config)
        self.health.fatal = None
        self.resend = []  # everything pending is sent again below
        self.replacements += 1
        events = sum(r[7] for r in self.pending.values())
        log.warning(
            "producer.replaced",
            component=self.health.component,
            reason=why,
            replacements=self.replacements,
            resent_messages=len(self.pending),
            resent_events=events,
        )
        for seq in list(self.pending):
            while True:
                try:
                    self._send(seq)
                    break
                except BufferError:
                    self.producer.poll(0.05)
                except KafkaException:  # the topic is not known yet: sent again by the next watch
                    self.resend.append(seq)
                    break
        self.last_progress = time.monotonic()
        self.answering_since = None

    def flush(self, timeout: float) -> int:
        """Wait until everything is acknowledged; returns the events not acknowledged after `timeout` without
        progress, or after `stop_s` once stopped (then given up and counted as undelivered)."""
        stopped_at: Optional[float] = None
        while self.pending:
            self.poll(0.1)
            now = time.monotonic()
            if self.stop.is_set():
                stopped_at = stopped_at or now
                if now - stopped_at >= self.options.stop_s:
                    break
            elif now - self.last_progress >= timeout and not self.health.is_away:
                break
        left = sum(r[7] for r in self.pending.values())
        if left and self.stop.is_set():
            self.give_up()
        return left

    def give_up(self) -> None:
        """Stopped: purge what is left and count it as undelivered."""
        events = sum(r[7] for r in self.pending.values())
        self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        self.producer.poll(0)
        self.pending.clear()
        self.pending_bytes = 0
        self.undelivered += events
        log.warning(
            "producer.undelivered",
            events=self.undelivered,
            reason="stopped while Kafka had not acknowledged them"
            + (" (the broker is unavailable)" if self.health.is_away else ""),
        )

    def __len__(self) -> int:
        return len(self.producer)
