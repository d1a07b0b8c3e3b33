"""Whether what the dashboard and the API show is current: the sink readable, the newest window recent.

A locked SQLite file, a restarting PostgreSQL server or a dataflow waiting out either leaves the newest stored
window behind the wall clock; a viewer must see that the data is delayed, and since when, rather than an error
page or figures that look live. The sink being unreadable by this server is one case of it: the last summary read
is served again, marked with the sink unavailable since the first failed read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Optional

import structlog

from pypi_pulse.events import parse_iso
from pypi_pulse.sink import queries
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.retry import iso, one_line

log = structlog.get_logger("pypi_pulse.dashboard")

_EMPTY_SUMMARY: dict[str, object] = {
    "latest": None,
    "windows": 0,
    "downloads": 0,
    "first": None,
    "last": None,
    "watermark": None,
    "counters": {},
    "today": None,
}


def _default_delayed_after_s() -> float:
    from pypi_pulse.config import Settings

    return Settings.model_fields["live_delayed_after_seconds"].default


_delayed_after_s = [_default_delayed_after_s()]


def configure(delayed_after_s: float) -> None:
    """The server's setting `live_delayed_after_seconds` (`serve` sets it before building the app)."""
    _delayed_after_s[0] = delayed_after_s


def delayed_after_s() -> float:
    return _delayed_after_s[0]


def delay(newest_start: Optional[int], unavailable_since: Optional[float], now: Optional[float] = None) -> dict:
    """`delayed`, `behind_seconds` (wall clock minus the end of the newest window) and `delayed_since` (the end of
    the newest window, or the first failed read when there is none)."""
    now = time.time() if now is None else now
    behind = None if newest_start is None else round(now - (newest_start + 1), 3)
    delayed = unavailable_since is not None or (behind is not None and behind > delayed_after_s())
    since = None
    if delayed:
        if newest_start is not None:
            since = iso(newest_start + 1)
        elif unavailable_since is not None:  # delayed with no window: the sink cannot be read
            since = iso(unavailable_since)
    return {"delayed": delayed, "behind_seconds": behind, "delayed_since": since}


class SummaryHealth:
    """`/api/live/summary` that answers while the sink cannot be read: the last summary read, marked."""

    def __init__(self):
        self.unavailable_since: Optional[float] = None
        self.last: Optional[dict] = None
        self._lock = threading.Lock()

    def summary(self, open_sink_fn: Callable[[], Sink]) -> dict:
        since: Optional[float]
        try:
            sink = open_sink_fn()
            try:
                out = queries.live_summary(sink)
            finally:
                sink.close()
        except Exception as exc:
            with self._lock:
                if self.unavailable_since is None:
                    self.unavailable_since = time.time()
                    log.warning("sink.read_failed", where="api", error=one_line(exc))
                since, out = self.unavailable_since, dict(self.last or _EMPTY_SUMMARY)
        else:
            with self._lock:
                self.last, since = dict(out), None
                if self.unavailable_since is not None:
                    log.warning(
                        "sink.read_ok", where="api", unavailable_s=round(time.time() - self.unavailable_since, 1)
                    )
                self.unavailable_since = None
        newest_start = int(parse_iso(out["last"])) if out.get("last") else None
        out["sink"] = {"available": since is None, "unavailable_since": iso(since) if since is not None else None}
        out.update(delay(newest_start, since))
        return out


SUMMARY_SCHEMA = {
    "sink": {
        "type": "object",
        "properties": {"available": {"type": "boolean"}, "unavailable_since": {"type": "string", "nullable": True}},
    },
    "delayed": {"type": "boolean"},
    "behind_seconds": {"type": "number", "nullable": True},
    "delayed_since": {"type": "string", "nullable": True},
}
