"""Kafka input that hands the dataflow whole batches of raw messages, one partition per Kafka partition.

Why not Bytewax's per-message KafkaSource: the dataflow's speed comes from parsing and pre-aggregating a batch in
one call, and its exactness from knowing each partition's own progress (the watermark is the minimum over
partitions, not one clock shared by partitions read at different speeds). Offsets are the recovery state, so a
resumed dataflow re-reads exactly what its last snapshot had not yet covered.

The memory-only embedded broker forgets every topic when it restarts: a resumed (or running) dataflow's offset may
then lie beyond the end of a new, shorter log, where Kafka clients wait silently for messages that will never come
while the new events go unread. Tansu does not answer such a fetch with OFFSET_OUT_OF_RANGE, and the end offset it
lists is too low to compare with (known-facts.md); the high watermark its fetch responses carry is right, and
librdkafka keeps it. A partition whose fetches keep saying the log ends before our offset is resumed at the log's
start, logged (`source.offset_reset`, error) and counted (pypi_pulse_dataflow_offset_resets). A Kafka that does
answer OFFSET_OUT_OF_RANGE is handled the same way (`auto.offset.reset=error`, so that librdkafka never resets in
silence). A new log already longer than our offset cannot be told from the old one by offsets; a running dataflow
tells it by the topic's id, read again after every outage before it consumes again (dataflow/log_identity.py), and
then also reports what the old log held beyond its offset, lost with the broker (`lost_messages`, metric
pypi_pulse_dataflow_messages_lost_with_broker). The id is part of each partition's recovery state with its offset,
so a dataflow resumed after the broker restarted tells a new log the same way; what the old log held beyond the
snapshot's offset is then unknown, and reported as such.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Optional

import numpy as np
import structlog
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pypi_pulse.config import DEFAULT_BROKER_OUTAGE_LOG_S, DEFAULT_OFFSET_RESET_CONFIRM_S
from pypi_pulse.dataflow.log_identity import TopicIdentity
from pypi_pulse.events import PACK_HEADER, unpack
from pypi_pulse.kafka_health import BrokerHealth
from pypi_pulse.metrics import dataflow_metrics

log = structlog.get_logger(__name__)
StopOffsets = Callable[[], Optional[dict[int, int]]]

# Set on Ctrl-C/SIGTERM: partitions end their input, so Bytewax finishes its epoch and exits cleanly.
STOP = threading.Event()


@dataclass
class RawBatch:
    partition: int
    n_partitions: int
    values: list[bytes]  # message values: one event each, unless packed (PACK_HEADER)
    next_offset: int  # offset after the last message in `values`
    caught_up: bool  # the partition had nothing more to give at read time
    final: bool = False  # the partition reached its stop offset (batch mode)
    wall: float = field(default_factory=time.time)
    pack_sizes: Optional[list[int]] = None  # events in each message, when some message is packed

    @property
    def n_events(self) -> int:
        return len(self.values) if self.pack_sizes is None else sum(self.pack_sizes)

    def event_values(self) -> list[bytes]:
        """One value per event. Packed messages stay whole until a tier needs their events one by one: the usual
        batch is read by Arrow as one NDJSON buffer, packed or not."""
        if self.pack_sizes is None:
            return self.values
        out: list[bytes] = []
        for value, n in zip(self.values, self.pack_sizes):
            if n == 1:
                out.append(value)
            else:
                out += unpack(value)
        return out


class _Partition(StatefulSourcePartition[RawBatch, tuple]):
    def __init__(
        self,
        config: dict,
        topic: str,
        partition: int,
        n_partitions: int,
        start: int,
        batch_size: int,
        stop_offsets: Optional[StopOffsets],
        heartbeat_s: float,
        drain_idle_s: Optional[float],
        health: Optional[BrokerHealth] = None,
        reset_confirm_s: float = DEFAULT_OFFSET_RESET_CONFIRM_S,
        identity: Optional[TopicIdentity] = None,
        resumed_topic_id: Optional[str] = None,
    ):
        self.health = health or BrokerHealth("dataflow", config["bootstrap.servers"])
        self.identity = identity or TopicIdentity(config["bootstrap.servers"], topic)
        self.outages_seen = self.health.outages
        self.topic_id = self.identity.current(self.outages_seen)  # None: adopted at the first answer
        self.log_end = 0  # the log's end by the broker's fetch responses: what it held that we had not read yet
        self.log_end_known = True  # False while a resumed partition has not compared ids: the old end is unknown
        self.consumer = Consumer({**config, **self.health.client_config()})
        self.topic = topic
        self.reset_confirm_s = reset_confirm_s
        self.beyond_end_since: Optional[float] = None
        self.next_end_check = 0.0
        # The partition's leader is looked up first: assigned before librdkafka knows it, a partition waits for a
        # fixed 500 ms timer before its start offset is queried, and a batch run's first events waited with it.
        try:
            self.consumer.list_topics(topic, timeout=10)
        except KafkaException:  # only a head start: without it the partition starts on librdkafka's timer
            log.warning("source.metadata_unavailable", topic=topic, partition=partition)
        self.consumer.assign([TopicPartition(topic, partition, start if start >= 0 else OFFSET_BEGINNING)])
        self.partition = partition
        self.n_partitions = n_partitions
        self.next_offset = max(start, 0)
        self.batch_size = batch_size
        self.events_per_message = 1
        self.stop_offsets = stop_offsets
        self.heartbeat_s = heartbeat_s
        self.drain_idle_s = drain_idle_s
        self.idle_since: Optional[float] = None
        self.at_eof = False  # only the broker's end-of-partition event says so; an empty local queue does not
        self.awake: Optional[datetime] = None
        self.done = False
        dataflow_metrics.track_partition(self, topic)
        if resumed_topic_id and self.next_offset > 0:
            self._check_resumed_log(resumed_topic_id)

    def _check_resumed_log(self, resumed_topic_id: str) -> None:
        """A partition resumed from a snapshot reads on only from the log the snapshot's offset belongs to."""
        if self.topic_id is None:  # the broker does not name the topic yet: compare before the first batch
            self.topic_id = resumed_topic_id
            self.outages_seen = -1
            self.log_end_known = False
        elif self.topic_id != resumed_topic_id:
            # one fetch first, whatever it returns (this log is read again from its start): the log's end that its
            # response carries is right, where the end Tansu lists is too low (known-facts.md)
            self.consumer.consume(1, 1.0)
            try:
                lo, hi = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)
            except KafkaException:
                lo, hi = 0, None
            self._reset_to_start(lo, hi, "the topic was recreated while the dataflow was down (its id changed)")

    def _stop_at(self) -> Optional[int]:
        if self.stop_offsets is None:
            return None
        targets = self.stop_offsets()
        return None if targets is None else targets.get(self.partition, 0)

    def next_batch(self) -> list[RawBatch]:
        if self.done or STOP.is_set():
            raise StopIteration
        # batch_size counts events: with packed messages, ask for as many messages as make that many events.
        # After an outage nothing is taken until the topic is known to be the log we were reading (then read again
        # from our offset) or a new one (read from its start); the client is still served, for its logs.
        same_log = self.outages_seen == self.health.outages or self._same_log()
        msgs = self.consumer.consume(max(1, self.batch_size // self.events_per_message), 0)
        if not same_log:
            msgs = []
        values: list[bytes] = []
        sizes: Optional[list[int]] = None
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.at_eof = True
                    self.health.back()
                    continue
                if err.code() == KafkaError._AUTO_OFFSET_RESET:  # a Kafka that says OFFSET_OUT_OF_RANGE
                    lo, hi = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), timeout=5)
                    self._reset_to_start(lo, hi, err.str())
                    values, sizes = [], None  # anything before it was at offsets that are gone
                    break
                if err.fatal():
                    raise RuntimeError(f"Kafka consumer error on partition {self.partition}: {err}")
                continue
            # a message without a value (a tombstone, which any client of a shared topic may write) is an event
            # that cannot be read: as an empty one it is dead-lettered with its reason, like any other
            value = m.value() or b""
            headers = m.headers()
            if headers and PACK_HEADER in headers:
                if sizes is None:
                    sizes = [1] * len(values)
                sizes.append(int(np.count_nonzero(np.frombuffer(value, np.uint8) == 10)) + 1)  # 3x bytes.count
            elif sizes is not None:
                sizes.append(1)
            values.append(value)
            offset = m.offset()
            assert offset is not None  # a consumed message has one
            self.next_offset = offset + 1
            self.at_eof = False
        events = len(values) if sizes is None else sum(sizes)
        dataflow_metrics.consumed(self, events)
        if values:
            self.beyond_end_since = None
            self.health.back()
            self._note_log_end()
        else:
            self.health.tick()
            if same_log:
                self._check_log_end()
        if values:
            self.events_per_message = max(1, events // len(values))
        caught_up = self.at_eof
        stop = self._stop_at()
        final = stop is not None and self.next_offset >= stop
        if self.drain_idle_s is not None:
            # drain mode: the partition is done once it has stayed at end-of-partition this long
            if values or not caught_up:
                self.idle_since = None
            elif self.idle_since is None:
                self.idle_since = time.monotonic()
            elif time.monotonic() - self.idle_since >= self.drain_idle_s:
                final = True
        if final:
            self.done = True
        if values or final:
            self.awake = None
            return [
                RawBatch(
                    self.partition, self.n_partitions, values, self.next_offset, caught_up, final, pack_sizes=sizes
                )
            ]
        # Nothing new: a heartbeat tells the clock this partition is caught up, at a gentle pace.
        self.awake = datetime.now(UTC) + timedelta(seconds=self.heartbeat_s)
        return [RawBatch(self.partition, self.n_partitions, [], self.next_offset, caught_up)]

    def _check_log_end(self) -> None:
        """Reset when the log has ended before our offset for `reset_confirm_s`, by the high watermark of the
        broker's fetch responses (cached by librdkafka; never the listed end offset, which Tansu reports too low)."""
        now = time.monotonic()
        if now < self.next_end_check:
            return
        self.next_end_check = now + 0.2
        try:
            lo, hi = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)
        except KafkaException:
            return
        if hi is None or hi < 0 or hi >= self.next_offset:
            self.beyond_end_since = None
        elif self.beyond_end_since is None:
            self.beyond_end_since = now
        elif now - self.beyond_end_since >= self.reset_confirm_s:
            self._reset_to_start(lo, hi, "the log ends before the resume offset")

    def _note_log_end(self) -> None:
        try:
            _lo, hi = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)
        except KafkaException:
            return
        if hi is not None and hi > self.log_end:
            self.log_end = hi

    def _same_log(self) -> bool:
        """After an outage: False until the broker names the topic's id; a new id means a new log, read from its
        start, and what the old log held beyond our offset reported as lost."""
        outages = self.health.outages
        topic_id = self.identity.current(outages)
        if topic_id is None:
            return False
        if self.topic_id is not None and topic_id != self.topic_id:
            lost = max(0, self.log_end - self.next_offset) if self.log_end_known else None
            try:
                lo, hi = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), timeout=1)
            except KafkaException:
                lo, hi = 0, None
            if self.next_offset or lost:
                self._reset_to_start(lo, hi, "the topic was recreated while the broker was away (its id changed)", lost)
            else:  # nothing read, nothing lost: only the new log to read from its start
                self.consumer.assign([TopicPartition(self.topic, self.partition, OFFSET_BEGINNING)])
            self.log_end = 0
        else:  # the same log: from our offset, past whatever was fetched and set aside meanwhile
            self.consumer.assign(
                [
                    TopicPartition(
                        self.topic, self.partition, self.next_offset if self.next_offset > 0 else OFFSET_BEGINNING
                    )
                ]
            )
        self.topic_id = topic_id
        self.outages_seen = outages
        self.log_end_known = True
        return True

    def _reset_to_start(self, lo: int, hi: Optional[int], why: str, lost: Optional[int] = None) -> None:
        start = lo if lo is not None and lo >= 0 else 0
        known = (
            {}
            if lost is None
            else {
                "lost_messages": lost,
                "old_log_end": self.log_end,
                "lost_meaning": "messages the broker had acknowledged that the dataflow had not read when it went",
            }
        )
        log.error(
            "source.offset_reset",
            topic=self.topic,
            partition=self.partition,
            resume_offset=self.next_offset,
            log_start=lo,
            log_end=hi,
            offsets_skipped_back=self.next_offset - start,
            reason=why,
            **known,
            meaning="the topic was recreated (a restarted memory-only broker?): resuming at the log's start; "
            "events the old log held beyond the resume offset are lost",
        )
        dataflow_metrics.offset_reset(self, self.next_offset - start, lost)
        self.consumer.assign(
            [TopicPartition(self.topic, self.partition, start if lo is not None and lo >= 0 else OFFSET_BEGINNING)]
        )
        self.next_offset = start
        self.beyond_end_since = None
        self.at_eof = False
        self.log_end_known = True

    def next_awake(self) -> Optional[datetime]:
        return self.awake

    def snapshot(self) -> tuple[int, Optional[str]]:
        return self.next_offset, self.topic_id

    def close(self) -> None:
        self.consumer.close()


class KafkaBatchSource(FixedPartitionedSource[RawBatch, tuple]):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        n_partitions: int,
        *,
        batch_size: int = 20_000,
        stop_offsets: Optional[StopOffsets] = None,
        heartbeat_s: float = 0.05,
        group_id: str = "pypi-pulse-dataflow",
        drain_idle_s: Optional[float] = None,
        outage_log_s: float = DEFAULT_BROKER_OUTAGE_LOG_S,
        reset_confirm_s: float = DEFAULT_OFFSET_RESET_CONFIRM_S,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.n_partitions = n_partitions
        self.batch_size = batch_size
        self.stop_offsets = stop_offsets
        self.heartbeat_s = heartbeat_s
        self.group_id = group_id
        self.drain_idle_s = drain_idle_s
        self.outage_log_s = outage_log_s
        self.reset_confirm_s = reset_confirm_s
        self.health: Optional[BrokerHealth] = None  # one for all partitions: one line per outage, not one each
        self.identity: Optional[TopicIdentity] = None  # one for all partitions: one round trip after an outage

    def list_parts(self) -> list[str]:
        return [str(p) for p in range(self.n_partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[tuple | int]) -> _Partition:
        config = {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",  # never reset in silence (source.offset_reset)
            "reconnect.backoff.max.ms": 1000,  # notice a returning broker within a second
            "queued.min.messages": 200_000,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "fetch.wait.max.ms": 20,
        }
        # (offset, topic id); a bare offset from a snapshot that held no id
        offset, topic_id = resume_state if isinstance(resume_state, tuple) else (resume_state, None)
        start = offset if offset is not None else -1
        if self.health is None:
            self.health = BrokerHealth("dataflow", self.bootstrap, self.outage_log_s)
        if self.identity is None:
            self.identity = TopicIdentity(self.bootstrap, self.topic)
        return _Partition(
            config,
            self.topic,
            int(for_part),
            self.n_partitions,
            start,
            self.batch_size,
            self.stop_offsets,
            self.heartbeat_s,
            self.drain_idle_s,
            self.health,
            self.reset_confirm_s,
            self.identity,
            topic_id,
        )
