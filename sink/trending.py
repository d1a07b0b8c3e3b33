"""Trending now: the projects whose downloads over the last hours most exceed their usual level for those hours
of the week.

The window is the newest whole hours the sealed rollup blocks reach (sink/recent.py): exact counts, as final as
the rollups, behind real time by the lateness horizon plus up to a block and an hour (with the defaults, the hour
that ended 10 to 20 minutes ago is shown from 20 minutes past the hour on).

The usual level of a project for an hour H of the week is the mean, over the same hour of the last
`baseline_weeks` weeks, of its downloads that day (daily `overall` rollup) times the share of that day's downloads
PyPI as a whole made in that hour (`block_totals`; 1/24 for a day without them). Per-project hourly history
would cost a row per project and hour for weeks, more than the daily rollups themselves at PyPI's mix; the
daily rollups are kept for 400 days anyway, and most downloads follow the same working-hours rhythm (CI,
deployments), so a project's day scaled by PyPI's hour is a close, cheap estimate. Days the sink does not hold
are left out of the mean; a project absent on a day it could have been counted counts 0 that day. With no
comparable day at all (a sink younger than a week), the previous days stand in, whatever their weekday.

The ratio divides by the baseline, floored at one download, so that a new project surging from nothing ranks by
its downloads instead of dividing by zero. Projects under `min_downloads` per hour of the window are not listed:
a jump from 2 to 20 is noise, not a surge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.recent import HOUR_S

DAY_S = 86400
BASELINE_FLOOR = 1.0
_CHUNK = 400  # bound on `IN (...)` lists, under every backend's parameter limit


@dataclass(frozen=True)
class TrendingOptions:
    """The trending settings (pypi_pulse/config.py), for the API, the dashboard tab and the exporter."""

    min_downloads: int = 100
    baseline_weeks: int = 4
    max_window_hours: int = 6
    metric_top: int = 10

    @classmethod
    def from_settings(cls, s) -> TrendingOptions:
        return cls(
            s.trending_min_downloads, s.trending_baseline_weeks, s.trending_max_window_hours, s.trending_metric_top
        )

    @classmethod
    def current(cls) -> TrendingOptions:
        """As `PYPI_PULSE_*` variables and the config file `serve` or `metrics` was started with set them."""
        from pypi_pulse.config import Settings

        return cls.from_settings(Settings())

    def compute(self, sink: Sink, hours: int = 1, limit: int = 20) -> Trending:
        return trending(sink, hours, min_downloads=self.min_downloads, baseline_weeks=self.baseline_weeks, limit=limit)


@dataclass
class Trending:
    hours: int
    start: Optional[int] = None  # epoch seconds of the window, [start, end); None: no sealed block yet
    end: Optional[int] = None
    rows: list[dict] = field(default_factory=list)  # {"project", "downloads", "baseline", "ratio"}, best first


def window_end(newest_block_end: int) -> int:
    """The newest hour boundary the sealed blocks have reached."""
    return newest_block_end - newest_block_end % HOUR_S


def trending(
    sink: Sink, hours: int = 1, *, min_downloads: int = 100, baseline_weeks: int = 4, limit: int = 20
) -> Trending:
    out = Trending(hours)
    ((newest,),) = sink.query("SELECT MAX(block_end) FROM recent_downloads")
    if newest is None:
        return out
    out.end = window_end(int(newest))
    out.start = out.end - hours * HOUR_S
    counts = {
        p: int(n)
        for p, n in sink.query(
            "SELECT project, SUM(downloads) FROM recent_downloads WHERE block_end > ? AND block_end <= ? "
            "GROUP BY project HAVING SUM(downloads) >= ?",
            (out.start, out.end, min_downloads * hours),
        )
    }
    if not counts:
        return out
    base = baselines(sink, sorted(counts), out.start, hours, baseline_weeks)
    rows = [
        {
            "project": p,
            "downloads": n,
            "baseline": round(base.get(p, 0.0), 2),
            "ratio": round(n / max(base.get(p, 0.0), BASELINE_FLOOR), 2),
        }
        for p, n in counts.items()
    ]
    rows.sort(key=lambda r: (-r["ratio"], -r["downloads"], r["project"]))
    out.rows = rows[:limit]
    return out


def baselines(sink: Sink, projects: list[str], start: int, hours: int, weeks: int) -> dict[str, float]:
    """{project: usual downloads over the `hours` hours from `start`}, as the module docstring defines it."""
    stored = {
        d
        for (d,) in sink.history_query(
            "SELECT day FROM daily_totals WHERE dimension = 'overall' AND category = '' AND day < ?", (_day(start),)
        )
    }
    plan: list[tuple[list[str], int]] = []  # per hour of the window: (comparable days, hour of day)
    for h in range(hours):
        t = start + h * HOUR_S
        days = [_day(t - k * 7 * DAY_S) for k in range(1, weeks + 1)]
        days = [d for d in days if d in stored and d < _day(t)]
        if not days:
            days = [d for d in (_day(t - k * DAY_S) for k in range(1, 7 * weeks + 1)) if d in stored][:weeks]
        plan.append((days, (t % DAY_S) // HOUR_S))
    all_days = sorted({d for days, _ in plan for d in days})
    if not all_days:
        return {}
    share = hour_shares(sink, all_days)
    daily: dict[tuple[str, str], int] = {}
    day_marks = ", ".join("?" for _ in all_days)
    for chunk in (projects[i : i + _CHUNK] for i in range(0, len(projects), _CHUNK)):
        marks = ", ".join("?" for _ in chunk)
        for day, project, n in sink.history_query(
            f"SELECT day, project, downloads FROM daily WHERE day IN ({day_marks}) AND project IN ({marks}) "
            "AND dimension = 'overall' AND category = ''",
            (*all_days, *chunk),
        ):
            daily[(day, project)] = int(n)
    out: dict[str, float] = {}
    for p in projects:
        total = 0.0
        for days, hour in plan:
            if days:
                total += sum(daily.get((d, p), 0) * share[d][hour] for d in days) / len(days)
        out[p] = total
    return out


def hour_shares(sink: Sink, days: list[str]) -> dict[str, list[float]]:
    """{day: 24 shares of the day's all-project downloads by hour}, from `block_totals`; even for a day without."""
    lo = _epoch(min(days))
    hi = _epoch(max(days)) + DAY_S
    per_hour: dict[str, list[int]] = {d: [0] * 24 for d in days}
    for end, n in sink.query(
        "SELECT block_end, downloads FROM block_totals WHERE block_end > ? AND block_end <= ?", (lo, hi)
    ):
        start = int(end) - 1  # a block ends at most on the hour: it counts in the hour it started in
        d = _day(start)
        if d in per_hour:
            per_hour[d][(start % DAY_S) // HOUR_S] += int(n)
    out = {}
    for d, hours in per_hour.items():
        total = sum(hours)
        out[d] = [h / total for h in hours] if total else [1 / 24] * 24
    return out


def _day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()


def _epoch(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())
