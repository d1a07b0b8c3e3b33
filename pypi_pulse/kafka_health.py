"""What a Kafka client says while its broker is away: one line of ours, repeated at a slow pace, not librdkafka's.

Left to itself, librdkafka logs every failed reconnection of every connection (thousands of lines a minute from a
dataflow with one consumer per partition). Its logs are routed here instead (the `logger` and `error_cb` client
settings): kept at debug level, and turned into one `kafka.broker_unavailable` warning when the broker goes, again
every `every_s` while it stays away, and one `kafka.broker_back` when the client makes progress again.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import structlog
from confluent_kafka import KafkaError

log = structlog.get_logger(__name__)

# errors and log facilities that mean "no connection to the broker", not a problem of our own
AWAY_CODES = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})
AWAY_FACILITIES = ("FAIL", "BROKERFAIL", "CONNECT")


class BrokerHealth:
    """Shared by every client of one component (a dataflow's partitions, a producer across its replacements)."""

    def __init__(self, component: str, bootstrap: str, every_s: float = 30.0):
        self.component, self.bootstrap, self.every_s = component, bootstrap, every_s
        self.away_since: Optional[float] = None
        self.last_said = 0.0
        self.reason = ""
        self.fatal: Optional[KafkaError] = None
        self.outages = 0  # how many times the broker went away: a client that must re-check the broker after an outage compares it with its own
        self._lock = threading.Lock()

    # --- librdkafka's callbacks -------------------------------------------------------------------------------
    def error_cb(self, err: KafkaError) -> None:
        if err.code() in AWAY_CODES:
            self.away(err.str())
        elif err.fatal():
            self.fatal = err
            log.error("kafka.fatal_error", component=self.component, error=err.str())
        else:
            log.debug("kafka.error", component=self.component, error=err.str())

    def log(self, level: int, fmt: str, *args) -> None:
        """librdkafka's log lines (the `logger` setting): debug only; a failed connection marks the broker away."""
        text = fmt % args if args else fmt
        if any(f"{facility} [" in text[:40] for facility in AWAY_FACILITIES):
            self.away(text.split("]: ", 1)[-1][:200])
        log.debug("kafka.client_log", component=self.component, level=level, line=text[:500])

    def client_config(self) -> dict:
        """Settings that route a client's logs and errors here."""
        return {"logger": self, "error_cb": self.error_cb, "log_level": 4}  # syslog levels: warnings and worse

    # --- state ----------------------------------------------------------------------------------------------------
    def away(self, reason: str) -> None:
        with self._lock:
            now = time.monotonic()
            self.reason = reason
            if self.away_since is None:
                self.away_since = now
                self.outages += 1
                self._say(now)

    def tick(self) -> None:
        """Repeat the warning every `every_s` while the broker stays away."""
        with self._lock:
            if self.away_since is not None and time.monotonic() - self.last_said >= self.every_s:
                self._say(time.monotonic())

    def back(self) -> None:
        """The client made progress (a delivery, a message, an end of partition): the broker answers again."""
        if self.away_since is None:
            return
        with self._lock:
            if self.away_since is None:
                return
            log.warning(
                "kafka.broker_back",
                component=self.component,
                bootstrap=self.bootstrap,
                away_seconds=round(time.monotonic() - self.away_since, 1),
            )
            self.away_since = None

    @property
    def is_away(self) -> bool:
        return self.away_since is not None

    def _say(self, now: float) -> None:
        assert self.away_since is not None  # said only while away
        self.last_said = now
        log.warning(
            "kafka.broker_unavailable",
            component=self.component,
            bootstrap=self.bootstrap,
            away_seconds=round(now - self.away_since, 1),
            reason=self.reason,
        )
