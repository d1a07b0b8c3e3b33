"""The UTC day so far, counted once: the day's rollups in the history plus the live windows of the seconds the
history does not cover yet (one definition for the Live tab's card, `/api/live/summary` and
`pypi_pulse_downloads_today`).

History trails live data: a minute reaches the history once the lateness horizon has passed it, in aligned
10-minute blocks (docs/dataflow.md), so the history alone says 0 for the first 20 minutes of a stream and then
jumps, while the windows alone forget whatever the windows no longer hold (retention) or never held (a day's
rollups written by another run). The history knows which event-time ranges of a day it holds (its block files'
names, or the whole day for a day file: `Sink.history_covered`), and a second's windows and its rollup counts
hold the same events (both close at the same lateness horizon), so:

    today = daily_totals(day, with_mirrors) + windows of the day whose second is not in a covered range

`with_mirrors` because a window counts every download, mirrors included. The day's covered ranges are read, then
its totals, then its covered ranges again, until the two readings agree: a file only ever adds to what a day
covers (a block is written whole by one rename, a day file covers the whole day), so equal readings mean the
totals were read from exactly the covered files. The windows are read afterwards: a block sealed in between
still counts once, because the windows of its seconds no longer change once it is sealed. A day a backfill owns
holds the backfill's figures and nothing from the stream (sink/rollup.py): its total is the history's alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from pypi_pulse.sink.base import Sink

DAY_S = 86400
_RANGES_PER_QUERY = 200


@dataclass(frozen=True)
class Today:
    day: str  # 'YYYY-MM-DD', the UTC day of the newest window
    downloads: int  # from_rollups + from_windows
    from_rollups: int  # the day's totals in the history (with mirrors)
    from_windows: int  # the day's windows in seconds the history does not cover yet
    rollups_through: Optional[int]  # end (epoch s) of the day's latest range in the history, None if none
    backfilled: bool  # the day is a backfill's: the stream adds nothing to it

    def to_json(self) -> dict:
        from pypi_pulse.events import iso_second

        return {
            "day": self.day,
            "downloads": self.downloads,
            "from_rollups": self.from_rollups,
            "from_windows": self.from_windows,
            "rollups_through": None if self.rollups_through is None else iso_second(self.rollups_through),
            "backfilled": self.backfilled,
        }


def day_start(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def uncovered_ranges(start: int, end: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[lo, hi) second ranges of [start, end) outside every [s, e) range of `covered`, merged, in order."""
    out: list[tuple[int, int]] = []
    at = start
    for lo, hi in sorted(covered):
        if lo > at:
            out.append((at, min(lo, end)))
        at = max(at, hi)
        if at >= end:
            break
    if at < end:
        out.append((at, end))
    return [r for r in out if r[0] < r[1]]


def windows_sum(sink: Sink, ranges: list[tuple[int, int]]) -> int:
    total = 0
    for i in range(0, len(ranges), _RANGES_PER_QUERY):
        part = ranges[i : i + _RANGES_PER_QUERY]
        where = " OR ".join("(start >= ? AND start < ?)" for _ in part)
        r = sink.query(f"SELECT SUM(downloads) FROM windows WHERE {where}", tuple(x for lo_hi in part for x in lo_hi))
        total += int(r[0][0] or 0) if r else 0
    return total


def history_of_day(sink: Sink, day: str) -> tuple[list[tuple[int, int]], int, bool]:
    """(covered ranges, with_mirrors total, backfilled) of `day`, the total read from exactly the covered files
    (the module docstring says why two equal readings of the ranges prove it)."""
    covered = sink.history_covered(day)
    while True:
        ((total, backfilled),) = sink.history_query(
            "SELECT (SELECT SUM(downloads) FROM daily_totals WHERE day = ? AND dimension = 'with_mirrors'), "
            "(SELECT COUNT(*) FROM backfilled_days WHERE day = ?)",
            (day, day),
        )
        again = sink.history_covered(day)
        if again == covered:
            return covered, int(total or 0), bool(backfilled)
        covered = again


def downloads_on(sink: Sink, day: str, until: Optional[int] = None) -> Today:
    """Downloads (mirrors included) of UTC `day` up to the second `until` (exclusive; default the day's end)."""
    start = day_start(day)
    end = start + DAY_S if until is None else min(max(int(until), start), start + DAY_S)
    covered, total, backfilled = history_of_day(sink, day)
    through = max(e for _, e in covered) if covered else None
    if backfilled:
        return Today(day, total, total, 0, through, True)
    live = windows_sum(sink, uncovered_ranges(start, end, covered))
    return Today(day, total + live, total, live, through, False)


def downloads_today(sink: Sink) -> Optional[Today]:
    """The UTC day of the newest window, so far; None before any window exists."""
    r = sink.query("SELECT MAX(start) FROM windows")
    if not r or r[0][0] is None:
        return None
    newest = int(r[0][0])
    day = dt.datetime.fromtimestamp(newest, dt.UTC).date().isoformat()
    return downloads_on(sink, day, newest + 1)


def partial_days(sink: Sink, days: list[str]) -> list[str]:
    """Which of `days` the history does not hold whole yet: days with a stored window at or after the end of the
    day's last covered range (the seconds still inside the lateness horizon, or in a block not yet sealed). A
    backfilled or compacted day (its day file covers it all), and a day whose windows are all covered (or gone with
    retention), is complete."""
    out = []
    for day in days:
        start = day_start(day)
        covered = sink.history_covered(day)
        ((last_window,),) = sink.query(
            "SELECT MAX(start) FROM windows WHERE start >= ? AND start < ?", (start, start + DAY_S)
        )
        if last_window is None:
            continue
        if not covered or int(last_window) >= max(e for _, e in covered):
            out.append(day)
    return out
