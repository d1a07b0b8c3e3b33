"""What every tab's callbacks share: the sink reader, the live feed, the package index and the history cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from pypi_pulse.dashboard.cache import PeriodCache
from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.dashboard.live_feed import LiveFeed
from pypi_pulse.dashboard.packages import PackageIndex
from pypi_pulse.dashboard.reader import SinkReader
from pypi_pulse.sink import queries

NO_DATA = ("No data yet: start the pipeline with `pypi-pulse up` (or load history with "
           "`pypi-pulse run --source file:EXPORT --until-drained`); this page fills in by itself.")
NO_HISTORY = ("No daily history yet: rollups appear once the stream has run past the lateness horizon "
              "(10 minutes by default), or after `pypi-pulse run --source file:EXPORT --until-drained`.")


@dataclass
class DashContext:
    reader: SinkReader
    live: LiveFeed
    packages: PackageIndex
    limits: WebLimits
    history_cache: PeriodCache = field(default_factory=lambda: PeriodCache(30.0))

    @classmethod
    def for_sink(cls, url: str, limits: WebLimits) -> "DashContext":
        # two connections: a slow history query never holds up the once-per-second Live refresh
        reader = SinkReader(url)
        ctx = cls(reader, LiveFeed(SinkReader(url)), PackageIndex(lambda: ctx.query(queries.package_names)), limits)
        return ctx

    def default_packages(self, n: int = 2) -> list[str]:
        """The packages to show before the user picks any: the top of the newest live window (cheap and current),
        else the top of the last week of rollups."""
        try:
            latest = self.live.latest()
        except Exception:
            latest = None
        if latest is not None and latest.top:
            return [p for p, _ in latest.top[:n]]
        rng = self.history("day_range", queries.day_range)
        if rng is None:
            return []
        import datetime as dt

        start = (dt.date.fromisoformat(rng[1]) - dt.timedelta(days=6)).isoformat()
        return [p for p, _ in self.history("top_packages", queries.top_packages, start, rng[1], None, n)]

    def query(self, fn: Callable[..., Any], *args) -> Any:
        """Run one `sink.queries` function on the shared connection."""
        with self.reader.use() as db:
            return fn(db, *args)

    def history(self, key: Hashable, fn: Callable[..., Any], *args) -> Any:
        """A history query, cached for 30 s: rollups change at most once a minute."""
        return self.history_cache.get((key, *args), lambda: self.query(fn, *args))
