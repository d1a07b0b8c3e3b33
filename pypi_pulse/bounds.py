"""What one event may be: the bounds that keep a single hostile or broken event from steering the pipeline.

The dataflow's watermark, the sink's retention and the dashboard's "today" all follow the newest event time they
see. An event stamped `9999-12-31` would move all three to the end of time: every later event dropped as too late,
every real window deleted by retention, and dates past year 9999 that Python cannot represent. So an event time
is accepted only within [`EARLIEST_EVENT_SECOND`, wall clock + `future_tolerance_seconds`], and anything outside
is dead-lettered, never counted, and never seen by the clock.

- The lower bound is the start of PyPI's public download data (the BigQuery table begins in 2016): an earlier time
  is a broken clock or a mangled field, not a download.
- The upper bound allows for clocks that run a little ahead (the CDN's, a producer's): the default of five minutes
  is far more skew than NTP-synchronised hosts show, and far less than the lateness horizon (600 s), so a
  tolerated event can never seal real windows early. Tests that replay times ahead of today set it explicitly.

Each rule is defined here once; the dataflow's parse, the producer's readers and the sink import it.
"""

from __future__ import annotations

import math
import time
from typing import Optional

EARLIEST_EVENT_SECOND = 1_451_606_400  # 2016-01-01T00:00:00Z
DEFAULT_FUTURE_TOLERANCE_S = 300.0
# PyPI enforces no length of its own on project names that we could find documented; the longest name among the
# 15,000 most downloaded projects has 55 characters (pypi_pulse/data). 128 keeps every plausible name and keeps a 100,000-character one out of
# every window, rollup row and index.
DEFAULT_MAX_PROJECT_NAME = 128
# A real event is about 700 bytes. Bounded well under the producer's pack size (events.PACK_MAX_BYTES) and so under
# Kafka's message.max.bytes (1 MB by default, on the client and the broker): an oversized line is dead-lettered
# before it can be refused by Kafka and abort a replay.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024

TIMESTAMP_IN_FUTURE = "timestamp_in_future"
TIMESTAMP_BEFORE_2016 = "timestamp_before_2016"
PROJECT_NAME_TOO_LONG = "project_name_too_long"
EVENT_TOO_LARGE = "event_too_large"


def latest_second(now: float, tolerance_s: float = DEFAULT_FUTURE_TOLERANCE_S) -> int:
    """The newest event second accepted at wall-clock time `now`."""
    return int(now + tolerance_s)


def time_reason(second: int, now: float, tolerance_s: float = DEFAULT_FUTURE_TOLERANCE_S) -> Optional[str]:
    """Why an event second is refused (the dead-letter reason), or None when it is accepted."""
    if second < EARLIEST_EVENT_SECOND:
        return f"{TIMESTAMP_BEFORE_2016}: event second {second} is before PyPI's download data starts (2016-01-01)"
    if second > latest_second(now, tolerance_s):
        return (
            f"{TIMESTAMP_IN_FUTURE}: event second {second} is {second - now:.0f} s ahead of the wall clock "
            f"(future_tolerance_seconds {tolerance_s:g})"
        )
    return None


def accepted_time(ts: Optional[float], now: Optional[float] = None) -> Optional[float]:
    """`ts` if it is a finite event time within the bounds (default tolerance), else None: the producer's readers
    use it to pace and to sort, and leave refusing the event (with its reason) to the dataflow."""
    if ts is None or not math.isfinite(ts):
        return None
    return ts if time_reason(int(ts // 1), time.time() if now is None else now) is None else None


def project_reason(project: str, max_chars: int) -> Optional[str]:
    if len(project) > max_chars:
        return f"{PROJECT_NAME_TOO_LONG}: {len(project)} characters, more than max_project_name_chars {max_chars}"
    return None


def event_size_reason(size: int, max_bytes: int) -> str:
    return f"{EVENT_TOO_LARGE}: {size} bytes, more than max_event_bytes {max_bytes}"
