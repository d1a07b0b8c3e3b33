"""The last hour of 1-second windows, kept in memory and topped up once per refresh period for all viewers.

"Now" is the newest stored window, not the wall clock: a replay of old files, or a stream that pauses, still shows
its latest data (the Live tab says how long ago it was). Each refresh re-reads only the last couple of minutes,
because a window may be rewritten while its stragglers arrive; a full reload every few minutes picks up any
rewrite older than that.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from pypi_pulse.dashboard.cache import PeriodCache
from pypi_pulse.dashboard.reader import NoData, SinkReader
from pypi_pulse.sink import queries
from pypi_pulse.sink.model import WindowRow
from pypi_pulse.sink.retry import one_line
from pypi_pulse.sink.today import Today

HORIZON_S = 3600
REREAD_S = 120
FULL_RELOAD_S = 300.0
SMOOTH_S = 10


@dataclass(frozen=True)
class Counters:
    newest: int
    last_minute: int
    today: int
    rate: float  # downloads/s over the last SMOOTH_S seconds
    distinct_latest: int


@dataclass
class LiveState:
    windows: dict[int, WindowRow] = field(default_factory=dict)
    newest: Optional[int] = None
    today: Optional[Today] = None  # the UTC day of the newest window so far (queries.downloads_today)


class LiveFeed:
    def __init__(self, reader: SinkReader, period_s: float = 1.0):
        self.reader = reader
        self.cache = PeriodCache(period_s)
        self.state = LiveState()
        self._lock = threading.Lock()
        self._last_full = 0.0
        self._minutes: dict[int, Counter] = {}  # minute start -> country totals of settled minutes
        self._minutes_lock = threading.Lock()
        self.unavailable_since: Optional[float] = None  # wall time of the first failed read of the current outage
        self.queries = 0  # sink queries run, and refreshes done (for tests and benchmarks)
        self.refreshes = 0

    # ---- refresh (at most once per period, whoever asks) -----------------------------------------------------
    def current(self) -> LiveState:
        """The state for this period; raises reader.NoData when the sink cannot be read yet. Once it has been read,
        a failed read (sink locked, database restarting) keeps the last state and sets `unavailable_since`."""
        return self.cache.get("state", self._refresh)

    def _refresh(self) -> LiveState:
        self.refreshes += 1
        try:
            state = self._read()
        except Exception as exc:
            if self.unavailable_since is None:
                self.unavailable_since = time.time()
            if self.state.newest is None:
                raise exc if isinstance(exc, NoData) else NoData(f"the sink cannot be read: {one_line(exc)}") from None
            return self.state
        self.unavailable_since = None
        return state

    def _read(self) -> LiveState:
        with self._lock, self.reader.use() as db:
            st = self.state
            full = not st.windows or time.monotonic() - self._last_full > FULL_RELOAD_S
            if full:
                rows = db.latest_windows(1)
                fresh = db.windows(rows[0].start - HORIZON_S + 1, rows[0].start + 1) if rows else []
                windows = {}
                self._last_full = time.monotonic()
                self._minutes = {}
            else:
                assert st.newest is not None  # a state with windows has its newest
                fresh = db.windows(st.newest - REREAD_S, 2**62)
                windows = dict(st.windows)
            self.queries += 1
            for w in fresh:
                windows[w.start] = w
            if not windows:
                self.state = LiveState()
                return self.state
            newest = max(windows)
            cutoff = newest - HORIZON_S
            windows = {s: w for s, w in windows.items() if s > cutoff}
            today = st.today
            if full or newest != st.newest or today is None:  # a paused stream's day does not change
                today = queries.downloads_today(db)
                self.queries += 1
            self.state = LiveState(windows, newest, today)
            return self.state

    # ---- views (cached per period and arguments) ------------------------------------------------------------
    def counters(self) -> Optional[Counters]:
        st = self.current()
        n = st.newest
        if n is None:
            return None

        def compute():
            ws = st.windows
            last_minute = sum(w.downloads for s, w in ws.items() if s > n - 60)
            smooth = sum(w.downloads for s, w in ws.items() if s > n - SMOOTH_S)
            today = st.today.downloads if st.today is not None else 0
            return Counters(n, last_minute, today, smooth / SMOOTH_S, ws[n].unique_packages)

        return self.cache.get(("counters", st.newest), compute)

    def countries(self, seconds: int) -> dict[str, int]:
        """Downloads per alpha-2 country over the last `seconds` (up to the horizon)."""
        st = self.current()
        newest = st.newest
        if newest is None:
            return {}

        def compute():
            total: Counter = Counter()
            lo = newest - seconds + 1
            first_minute = -(-lo // 60) * 60
            last_minute = (newest + 1) // 60 * 60  # whole minutes [first_minute, last_minute), then the edges
            edges: Iterable[int]
            if first_minute >= last_minute:  # no whole minute inside: every second on its own
                edges = range(lo, newest + 1)
            else:
                for m in range(first_minute, last_minute, 60):
                    total.update(self._minute(st, newest, m))
                edges = (*range(lo, first_minute), *range(last_minute, newest + 1))
            get = st.windows.get
            for s in edges:
                w = get(s)
                if w is not None:
                    total.update(w.countries)
            return dict(total)

        return self.cache.get(("countries", st.newest, seconds), compute)

    def _minute(self, st: LiveState, newest: int, start: int) -> Counter:
        """Country totals of one whole minute, kept once the minute is too old to be rewritten."""
        hit = self._minutes.get(start)
        if hit is not None:
            return hit
        total: Counter = Counter()
        get = st.windows.get
        for s in range(start, start + 60):
            w = get(s)
            if w is not None:
                total.update(w.countries)
        if start + 60 < newest - REREAD_S:
            with self._minutes_lock:
                if len(self._minutes) > 2 * HORIZON_S // 60:
                    self._minutes = {m: c for m, c in self._minutes.items() if m > newest - HORIZON_S - 60}
                self._minutes[start] = total
        return total

    def series(self, seconds: int, countries: tuple[str, ...] = (), gap_s: int = 10):
        """(second starts, downloads, {country: downloads}) as float arrays over every second of the range, NaN
        where nothing is known (`gaps`): drawn as a gap, not as 0/s."""
        st = self.current()
        newest = st.newest
        if newest is None:
            return [], [], {}

        def compute():
            xs = np.arange(newest - seconds + 1, newest + 1, dtype=np.int64)
            get = st.windows.get
            rows = [get(s) for s in xs.tolist()]
            unknown = gaps(np.fromiter((w is not None for w in rows), dtype=bool, count=len(rows)), gap_s)
            total = np.fromiter((w.downloads if w else 0 for w in rows), dtype=np.float64, count=len(rows))
            total[unknown] = np.nan
            per = {}
            for c in countries:
                per[c] = np.fromiter(
                    (w.countries.get(c, 0) if w else 0 for w in rows), dtype=np.float64, count=len(rows)
                )
                per[c][unknown] = np.nan
            return xs, total, per

        return self.cache.get(("series", newest, seconds, countries, gap_s), compute)

    def latest(self) -> Optional[WindowRow]:
        st = self.current()
        return st.windows[st.newest] if st.newest is not None else None


def gaps(present: np.ndarray, gap_s: int) -> np.ndarray:
    """Which seconds of a range nothing is known about, given which have a window (the newest second has one).

    The dataflow writes a window for every second with a download, so a second without one inside a running
    stream had none: a real 0. But the windows cannot tell a quiet second from a stopped producer or pipeline, so
    a run of more than `gap_s` seconds without a window (setting `live_gap_seconds`) is taken for a time nothing
    was measured, and so is every second before the first window of the range: both are gaps, not 0/s.
    """
    unknown = np.zeros(len(present), dtype=bool)
    idx = np.flatnonzero(present)
    if not len(idx):
        unknown[:] = True
        return unknown
    unknown[: idx[0]] = True
    for a, b in zip(idx[:-1].tolist(), idx[1:].tolist()):
        if b - a - 1 > gap_s:
            unknown[a + 1 : b] = True
    return unknown
