"""The UTC day so far, counted once: the day's applied rollups plus the live windows of the minutes they do not
cover yet (one definition for the Live tab's card, `/api/live/summary` and `pypi_pulse_downloads_today`).

History trails live data: a minute reaches the daily rollups once the lateness horizon has passed it, in aligned
10-minute blocks (docs/dataflow.md), so the rollups alone say 0 for the first 20 minutes of a stream and then jump,
while the windows alone forget whatever the windows no longer hold (retention) or never held (a day's rollups
written by another run). The sink records every minute a block added to the rollups (`rollup_buckets`), and a
minute's windows and its rollup counts hold the same events (both close at the same lateness horizon), so:

    today = daily_totals(day, with_mirrors) + windows of the day whose minute is not in rollup_buckets

`with_mirrors` because a window counts every download, mirrors included. The day's totals and its applied minutes
are read by one statement (one snapshot on either backend); a block's totals reach `daily_totals` in the same
transaction as its minutes (sink/sqlite.py `apply_in_slices`). The windows are read afterwards: a minute applied
in between still counts once, because its windows no longer change once it is sealed. A day a backfill owns holds
the backfill's figures and nothing from the stream (sink/rollup.py): its total is the rollups' alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional

from pypi_pulse.sink.base import Sink

DAY_S = 86400
MINUTE_S = 60
_RANGES_PER_QUERY = 200


@dataclass(frozen=True)
class Today:
    day: str  # 'YYYY-MM-DD', the UTC day of the newest window
    downloads: int  # from_rollups + from_windows
    from_rollups: int  # the day's applied rollups (with mirrors)
    from_windows: int  # the day's windows in minutes the rollups do not cover yet
    rollups_through: Optional[int]  # end (epoch s) of the latest applied minute of the day, None if none
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


def uncovered_ranges(start: int, end: int, covered: set[int]) -> list[tuple[int, int]]:
    """[lo, hi) second ranges of [start, end) whose minutes are not in `covered` (minute starts), merged."""
    out: list[tuple[int, int]] = []
    for m in range(start - start % MINUTE_S, end, MINUTE_S):
        if m in covered:
            continue
        lo, hi = max(m, start), min(m + MINUTE_S, end)
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def windows_sum(sink: Sink, ranges: list[tuple[int, int]]) -> int:
    total = 0
    for i in range(0, len(ranges), _RANGES_PER_QUERY):
        part = ranges[i : i + _RANGES_PER_QUERY]
        where = " OR ".join("(start >= ? AND start < ?)" for _ in part)
        r = sink.query(f"SELECT SUM(downloads) FROM windows WHERE {where}", tuple(x for lo_hi in part for x in lo_hi))
        total += int(r[0][0] or 0) if r else 0
    return total


def downloads_on(sink: Sink, day: str, until: Optional[int] = None) -> Today:
    """Downloads (mirrors included) of UTC `day` up to the second `until` (exclusive; default the day's end)."""
    start = day_start(day)
    end = start + DAY_S if until is None else min(max(int(until), start), start + DAY_S)
    rows = sink.query(
        "SELECT t.total, t.backfilled, b.bucket FROM (SELECT "
        "(SELECT SUM(downloads) FROM daily_totals WHERE day = ? AND dimension = 'with_mirrors') AS total, "
        "(SELECT COUNT(*) FROM backfilled_days WHERE day = ?) AS backfilled) t "
        "LEFT JOIN rollup_buckets b ON b.bucket >= ? AND b.bucket < ?",
        (day, day, start, start + DAY_S),
    )
    total = int(rows[0][0] or 0)
    backfilled = bool(rows[0][1])
    covered = {int(b) for _, _, b in rows if b is not None}
    through = max(covered) + MINUTE_S if covered else None
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
    """Which of `days` the daily rollups do not hold whole yet: days with a stored window later than the day's
    last applied rollup minute (the minutes still inside the lateness horizon, or in a block not yet applied).
    A backfilled day, and a day whose windows are all covered (or gone with retention), is complete."""
    out = []
    for day in days:
        start = day_start(day)
        r = sink.query(
            "SELECT (SELECT MAX(bucket) FROM rollup_buckets WHERE bucket >= ? AND bucket < ?), "
            "(SELECT MAX(start) FROM windows WHERE start >= ? AND start < ?), "
            "(SELECT COUNT(*) FROM backfilled_days WHERE day = ?)",
            (start, start + DAY_S, start, start + DAY_S, day),
        )
        last_bucket, last_window, backfilled = r[0]
        if backfilled or last_window is None:
            continue
        if last_bucket is None or int(last_window) >= int(last_bucket) + MINUTE_S:
            out.append(day)
    return out
