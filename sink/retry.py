"""Riding out a sink that is locked, down or restarting: which errors are worth retrying, and the outage they make.

The dataflow is the sink's only writer and every one of its writes is idempotent (docs/sink.md: windows are
upserted, a rollup block is recorded as applied in the transaction that adds it, each slice of a block likewise),
so a write whose commit outcome is unknown can simply be run again. What must not happen is to give up: a worker
that raised on a locked SQLite file or a restarting PostgreSQL server took the whole dataflow down. So a transient
error is retried with a capped exponential backoff for as long as it takes, while the worker (and Kafka) hold the
backlog, which is then consumed exactly once. Any other error (a schema or programming error, a rollup bucket
that would count twice) still fails at once.

`Outage` turns the attempts into what an operator needs: one log line when the sink becomes unavailable (the
error, one line), one every `log_every_s` while it lasts, one when it is back with how long it was out, and the
time it became unavailable (for the `pypi_pulse_sink_unavailable_since_seconds` gauge).
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Optional, TypeVar

import structlog

log = structlog.get_logger("pypi_pulse.sink")

T = TypeVar("T")

# sqlite3.OperationalError covers lock timeouts and I/O trouble, but also "no such table" and syntax errors, which
# a retry never fixes: only these messages are taken for transient.
_SQLITE_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "database schema is locked",
    "busy",
    "disk i/o error",
    "database or disk is full",
    "unable to open database file",
)


class SinkUnavailable(ConnectionError):
    """The sink could not be reached (e.g. PostgreSQL refusing connections while it restarts)."""


def transient(exc: BaseException) -> bool:
    """Whether a failed sink call may succeed if simply tried again later."""
    if isinstance(exc, SinkUnavailable):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(t in text for t in _SQLITE_TRANSIENT)
    psycopg = sys.modules.get("psycopg")  # only loaded when a PostgreSQL sink is in use
    # OperationalError: connection lost or refused, admin shutdown, server starting up, lock or statement timeouts,
    # serialization failures; never programming, data or integrity errors
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.5
    max_s: float = 30.0
    log_every_s: float = 30.0

    def delays(self):
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


class Outage:
    """Whether the sink is unavailable to this process, since when, and the log lines that say so. Several
    sources (the worker, the block writer process) may fail at once; the sink is back when none fails."""

    def __init__(
        self,
        log_every_s: float = 30.0,
        on_change: Optional[Callable[[float], None]] = None,
        *,
        quiet: bool = False,
        **context,
    ):
        self.log_every_s = log_every_s
        self.quiet = quiet  # a helper process reports to the dataflow, which logs
        self.on_change = on_change  # called with the time it became unavailable (0.0: available)
        self.context = context
        self.failing: dict[str, float] = {}  # source -> wall time its first failed attempt began
        self.attempts = 0
        self.last_logged = -float("inf")

    @property
    def since(self) -> float:
        """Wall time the sink became unavailable; 0.0 while it is available."""
        return min(self.failing.values()) if self.failing else 0.0

    def failed(self, error: str, started: float, source: str = "worker", attempts: int = 1) -> None:
        was = self.since
        self.failing.setdefault(source, started)
        self.attempts += attempts
        now = time.time()
        if not self.quiet and (not was or now - self.last_logged >= self.log_every_s):
            self.last_logged = now
            log.warning(
                "sink.unavailable",
                since=iso(self.since),
                for_s=round(now - self.since, 1),
                failed_attempts=self.attempts,
                source=source,
                error=error,
                **self.context,
            )
        if self.since != was and self.on_change is not None:
            self.on_change(self.since)

    def ok(self, source: str = "worker") -> None:
        if source not in self.failing:
            return
        was = self.since
        del self.failing[source]
        if not self.failing and not self.quiet:
            log.warning(
                "sink.available",
                unavailable_s=round(time.time() - was, 1),
                since=iso(was),
                failed_attempts=self.attempts,
                **self.context,
            )
        if not self.failing:
            self.attempts = 0
            self.last_logged = -float("inf")
        if self.on_change is not None and self.since != was:
            self.on_change(self.since)


def patiently(
    fn: Callable[[], T],
    policy: RetryPolicy,
    outage: Outage,
    *,
    source: str = "worker",
    on_failure: Optional[Callable[[BaseException], None]] = None,
    between: Optional[Callable[[], None]] = None,
) -> T:
    """fn(), tried again after each transient error (with backoff) until it succeeds; other errors are raised.
    `on_failure` hears every failed attempt (metrics); `between` runs before each wait (it may raise to stop)."""
    delays = policy.delays()
    while True:
        started = time.time()
        try:
            result = fn()
        except Exception as exc:
            if not transient(exc):
                raise
            outage.failed(one_line(exc), started, source)
            if on_failure is not None:
                on_failure(exc)
            if between is not None:
                between()
            time.sleep(next(delays))  # the backoff itself: nothing to poll for, the sink says nothing when it is back
            continue
        outage.ok(source)
        return result
