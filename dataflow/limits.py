"""The event bounds (pypi_pulse/bounds.py) as the parse tiers apply them, at a cost that does not show.

The column tiers check a whole batch with two numpy reductions over its seconds and one pass over its distinct
project names; a batch with anything out of bounds is handed to the per-event tier, which gives each such event
its own dead-letter reason, as it does for every other bad event. Folded country codes are counted per distinct
code, not per event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from pypi_pulse.bounds import (
    DEFAULT_FUTURE_TOLERANCE_S,
    DEFAULT_MAX_PROJECT_NAME,
    EARLIEST_EVENT_SECOND,
    latest_second,
    project_reason,
    time_reason,
)
from pypi_pulse.countries import UNKNOWN, country_or_unknown


@dataclass(frozen=True)
class ParseLimits:
    """The settings `future_tolerance_seconds` and `max_project_name_chars`, as the dataflow's parse step takes
    them."""

    future_tolerance_s: float = DEFAULT_FUTURE_TOLERANCE_S
    max_project_chars: int = DEFAULT_MAX_PROJECT_NAME

    def seconds_within(self, secs: np.ndarray) -> bool:
        """Every second of a batch accepted at this moment (the usual case): whether the column tiers may keep it."""
        return not len(secs) or (
            int(secs.min()) >= EARLIEST_EVENT_SECOND
            and int(secs.max()) <= latest_second(time.time(), self.future_tolerance_s)
        )

    def names_within(self, names: Iterable[str]) -> bool:
        """Every distinct project name of a batch short enough."""
        limit = self.max_project_chars
        return all(len(n) <= limit for n in names)

    def time_reason(self, second: int, wall: float) -> Optional[str]:
        return time_reason(second, wall, self.future_tolerance_s)

    def project_reason(self, project: str) -> Optional[str]:
        return project_reason(project, self.max_project_chars)


DEFAULT_LIMITS = ParseLimits()


def countries_mapped(distinct: list) -> tuple[list[str], list[int]]:
    """Each distinct logged code as it is counted, and the positions of those folded into `ZZ` (null, empty or
    malformed; a logged `ZZ` is kept, not folded)."""
    mapped = [country_or_unknown(c) for c in distinct]
    folded = [i for i, (c, m) in enumerate(zip(distinct, mapped)) if m == UNKNOWN and c != UNKNOWN]
    return mapped, folded


def folded_count(indices: np.ndarray, folded: list[int]) -> int:
    """Events whose code was folded: counted over the codes' indices only when some distinct code was."""
    if not folded:
        return 0
    return int(np.isin(indices, np.asarray(folded, dtype=indices.dtype)).sum())


def discard_future(clock, latest: int) -> bool:
    """Forget what a restored clock holds beyond `latest` (wall clock + tolerance): a snapshot taken by a version
    that accepted far-future events would otherwise resume with a watermark at the end of time, drop every event
    as late and seal every real window at once. Partitions whose newest second was beyond it deliver it afresh;
    the watermark is worked out again; windows and minutes beyond it go (they came from events nothing accepts
    now). What was sealed stays sealed up to `latest`: events before it are counted as dropped, not counted twice
    into blocks the sink has already applied. True when anything changed."""
    import math

    from pypi_pulse.dataflow.partials import BUCKET_S

    changed = False
    for part in clock.parts.values():
        if part.max_second is not None and part.max_second > latest:
            part.max_second, changed = None, True
    if clock.watermark > latest + 1 + clock.out_of_order_s:
        clock.watermark, changed = -math.inf, True
    if clock.sealed_before > latest:
        clock.sealed_before, changed = latest - latest % BUCKET_S, True
    for sec in [s for s in clock.windows if s > latest]:
        del clock.windows[sec]
        clock.emitted.discard(sec)
        clock.dirty.discard(sec)
        changed = True
    for minute in [m for m in clock.rollups if m > latest]:
        del clock.rollups[minute]
        clock.dirty_minutes.discard(minute)
        changed = True
    return changed


def objects_only(data: bytes, breaks: np.ndarray) -> bool:
    """Every line of a batch starts with `{`, as every event does: only then is it handed to Arrow's JSON reader.
    pyarrow 26 crashes the process (a segmentation fault, not an exception) when a block of its input starts with a
    bare `null` line, so one message `null` would kill the dataflow; the msgspec tiers dead-letter such lines. The
    line starts are gathered at the newlines already found (about 1.5 ms more for 20,000 events)."""
    if data[:1] != b"{" or (len(breaks) and int(breaks[-1]) == len(data) - 1):
        return False
    return bool((np.frombuffer(data, np.uint8)[breaks + 1] == ord("{")).all())
