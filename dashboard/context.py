"""What every tab's callbacks share: the sink reader, the live feed, the package index and the history cache."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Optional

from pypi_pulse.dashboard.cache import PeriodCache
from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.dashboard.live_feed import LiveFeed
from pypi_pulse.dashboard.packages import PackageIndex
from pypi_pulse.dashboard.reader import SinkReader
from pypi_pulse.sink import queries
from pypi_pulse.sink.base import Sink, open_sink

NO_DATA = (
    "No data yet: start the pipeline with `pypi-pulse up` (or load history with "
    "`pypi-pulse run --source file:EXPORT --until-drained`); this page fills in by itself."
)
NO_HISTORY = (
    "No daily history yet: rollups appear once the stream has run past the lateness horizon "
    "(10 minutes by default), or after `pypi-pulse run --source file:EXPORT --until-drained`."
)


@dataclass
class DashContext:
    reader: SinkReader
    live: LiveFeed
    packages: PackageIndex
    limits: WebLimits
    history_cache: PeriodCache = field(default_factory=lambda: PeriodCache(30.0))

    @classmethod
    def for_sink(
        cls,
        url: str,
        limits: WebLimits,
        opener: Callable[..., Sink] = open_sink,
        live_opener: Optional[Callable[..., Sink]] = None,
    ) -> DashContext:
        """`live_opener` (default: `opener`) opens the Live feed's sink: a server's pool gives it a history reader of
        its own, so a long history question, which holds the shared reader, never holds up the Live refresh."""
        # two connections: a slow history query never holds up the once-per-second Live refresh
        reader = SinkReader(url, opener)
        live = LiveFeed(SinkReader(url, live_opener or opener))
        ctx = cls(reader, live, PackageIndex(lambda: ctx.query(queries.package_names)), limits)
        return ctx

    def default_packages(self, n: int = 2) -> list[str]:
        """The packages to show before the user picks any: the most downloaded of the last 7 days the rollups hold
        whole: the same on every visit, where the newest second's top changes each second."""
        return [p for p, _ in self.history("week_top", queries.week_top_packages, n)]

    def query(self, fn: Callable[..., Any], *args) -> Any:
        """Run one `sink.queries` function on the shared connection."""
        with self.reader.use() as db:
            return fn(db, *args)

    def history(self, key: Hashable, fn: Callable[..., Any], *args) -> Any:
        """A history query, cached for 30 s: rollups change at most once a minute."""
        return self.history_cache.get((key, *args), lambda: self.query(fn, *args))
