"""Whether the topic a running dataflow reads is still the log it was reading, once the broker was away.

A memory-only broker that restarts comes back without its topics; the producer creates them again, and the new
logs' offsets start at 0. As soon as a new log is longer than a partition's offset, offsets cannot tell it from the
old one: the consumer fetches on from its old offset and the new log's first events are skipped in silence (a
restarted producer re-sends its backlog at once, so this is the usual case, not a corner). A topic's id (Kafka's
topic UUID, which a recreated topic does not keep) can tell them apart: after every outage each partition stops
consuming until the id has been read again and compared with the one it was reading from.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import structlog
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

log = structlog.get_logger(__name__)


class TopicIdentity:
    """The topic's id as the broker reports it after a given outage; shared by the partitions of a source, so
    that one broker round trip (a few ms) answers them all."""

    def __init__(self, bootstrap: str, topic: str, retry_s: float = 0.5, timeout_s: float = 1.0):
        self.topic = topic
        self.retry_s, self.timeout_s = retry_s, timeout_s
        # its own failed connections are not news (the consumers say when the broker goes and comes back), and
        # its logs, served late, would announce an outage that is over
        self.admin = AdminClient(
            {"bootstrap.servers": bootstrap, "reconnect.backoff.max.ms": 1000, "log_level": 0, "error_cb": self._quiet}  # type: ignore[dict-item]  # callbacks are config values too (confluent-kafka's types leave them out)
        )
        self._known: tuple[int, Optional[str]] = (-1, None)  # (outage count when read, id)
        self._next_try = 0.0
        self._lock = threading.Lock()

    def current(self, outages: int) -> Optional[str]:
        """The topic's id read after the `outages`-th outage; None while the broker does not answer or the topic
        does not exist yet (then asked again at most every `retry_s`)."""
        with self._lock:
            seen, topic_id = self._known
            if seen == outages:
                return topic_id
            now = time.monotonic()
            if now < self._next_try:
                return None
            self._next_try = now + self.retry_s
            topic_id = self._describe()
            if topic_id is not None:
                self._known = (outages, topic_id)
            return topic_id

    @staticmethod
    def _quiet(err) -> None:
        log.debug("source.topic_id_client_error", error=err.str())

    def _describe(self) -> Optional[str]:
        try:
            future = self.admin.describe_topics(TopicCollection([self.topic]), request_timeout=self.timeout_s)[
                self.topic
            ]
            return str(future.result(self.timeout_s + 1).topic_id)
        except (KafkaException, TimeoutError) as exc:
            log.debug("source.topic_id_unknown", topic=self.topic, error=str(exc)[:200])
            return None
        except Exception as exc:  # the broker does not support describing topics: cannot tell, so never blocks
            log.warning("source.topic_id_unsupported", topic=self.topic, error=str(exc)[:200])
            return ""
