"""Downloads per country and UTC hour over the last 24 hours of per-second windows, kept up to date cheaply.

Summing a day of windows reads 86,400 rows of per-country counts (about a second on the 2-core machine), too slow
for every refresh. A window can change only until the lateness horizon has passed it (a late event rewrites
it), so each 10-minute block is summed once it is final and kept in memory; a refresh sums only the blocks still
open (the last `lateness_seconds` and the block in progress).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from pypi_pulse.sink import daily_pattern
from pypi_pulse.sink.daily_pattern import BLOCK_S

HOUR_S = 3600
HOURS = 24


@dataclass(frozen=True)
class CountryHours:
    first_hour: int  # epoch seconds of the first of the 24 hours; the last holds the newest window
    downloads: dict[str, list[int]]  # country -> downloads in each of the 24 hours
    seconds: list[int]  # seconds with a window in each hour


class CountryHoursCache:
    def __init__(self, lateness_s: float):
        self.lateness_s = lateness_s
        self._final: dict[int, tuple[int, Counter]] = {}
        self._lock = threading.Lock()

    def get(self, query: Callable) -> Optional[CountryHours]:
        """The last 24 hours up to the newest window's hour; None when there is no window. `query(fn, *args)` runs
        a sink.daily_pattern function on the dashboard's connection."""
        newest = query(daily_pattern.newest_window)
        if newest is None:
            return None
        first = (newest // HOUR_S - HOURS + 1) * HOUR_S
        blocks = range(first, (newest // BLOCK_S + 1) * BLOCK_S, BLOCK_S)
        with self._lock:
            self._final = {b: v for b, v in self._final.items() if b >= first}
            sums = {}
            for b in blocks:
                got = self._final.get(b)
                if got is None:
                    got = query(daily_pattern.block_countries, b)
                    if b + BLOCK_S + self.lateness_s <= newest:
                        self._final[b] = got
                sums[b] = got
        downloads: dict[str, list[int]] = {}
        seconds = [0] * HOURS
        for b, (n, counts) in sums.items():
            h = (b - first) // HOUR_S
            seconds[h] += n
            for cc, k in counts.items():
                downloads.setdefault(cc, [0] * HOURS)[h] += k
        return CountryHours(first, downloads, seconds)
