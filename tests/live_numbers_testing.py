"""A day of known downloads written through the real Sink API the way the dataflow leaves it: the early minutes in
applied rollup blocks (and in windows), the later minutes only in windows; plus the truth, counted from the
events themselves (never through pypi-pulse's aggregation code)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

from pypi_pulse.sink.model import RollupBucket, WindowRow

DAY = "2026-11-21"
DAY0 = int(dt.datetime(2026, 11, 21, tzinfo=dt.UTC).timestamp())
BLOCK = 600


@dataclass
class Scenario:
    events: dict[int, list[tuple[str, bool]]] = field(default_factory=dict)  # second -> [(project, mirror)]

    def window(self, s: int) -> WindowRow:
        per = Counter(p for p, _ in self.events[s])
        top = sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        return WindowRow(s, len(self.events[s]), len(per), {"US": len(self.events[s])}, top)

    def windows(self) -> list[WindowRow]:
        return [self.window(s) for s in sorted(self.events)]

    def block(self, start: int) -> RollupBucket:
        """The sealed 10-minute block [start, start + 600): with_mirrors counts every event, overall the rest."""
        counts: Counter = Counter()
        day = dt.datetime.fromtimestamp(start, dt.UTC).date().isoformat()
        for s in range(start, start + BLOCK):
            for p, mirror in self.events.get(s, ()):
                counts[(day, p, "with_mirrors", None)] += 1
                if not mirror:
                    counts[(day, p, "overall", None)] += 1
        return RollupBucket(start, dict(counts), span=BLOCK)

    def total(self, lo: int, hi: int) -> int:
        return sum(len(v) for s, v in self.events.items() if lo <= s < hi)

    def per_project(self, lo: int, hi: int) -> Counter:
        out: Counter = Counter()
        for s, v in self.events.items():
            if lo <= s < hi:
                out.update(p for p, _ in v)
        return out


def scenario(seed: int, start: int, seconds: int, projects: int = 30, per_second=(3, 40)) -> Scenario:
    """Events in [start, start + seconds), skewed towards the first projects, 5% from mirrors."""
    rng = random.Random(seed)
    names = [f"pkg-{i:02d}" for i in range(projects)]
    weights = [1.0 / (i + 1) for i in range(projects)]
    sc = Scenario()
    for s in range(start, start + seconds):
        n = rng.randint(*per_second)
        if n:
            sc.events[s] = [(p, rng.random() < 0.05) for p in rng.choices(names, weights, k=n)]
    return sc
