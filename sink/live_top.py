"""The top packages of the last N seconds of live windows, with what the windows can prove about each figure.

A window stores its second's top 10 only (`windows.top`), not every project's count, so a project's downloads over
a minute are known exactly only for the seconds it was in the top 10. For the others the window still bounds it:
it had at most as many as the 10th entry of that second (ties go by name), and none if the window lists every
project it saw (`unique_packages` entries) -- and never more than the second's downloads outside its top. So each
project gets a lower bound (its listed counts: the figure shown and ranked by) and an upper bound (plus the most
it can have had in the other seconds). An entry is `exact` when the two meet; the ranking is `exact` when every
entry is and the last of them has at least as many downloads as any project left out could have had. Nothing is
estimated: a figure that is only a lower bound says so (`exact: false`, and `downloads_max`).

Seconds without a window had no downloads (the dataflow writes a window for every second with an event).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pypi_pulse.sink.model import WindowRow

TOP_N = 10


@dataclass(frozen=True)
class TopEntry:
    project: str
    downloads: int  # at least this many: the sum of its listed per-second counts
    downloads_max: int  # at most this many
    exact: bool


@dataclass(frozen=True)
class LiveTop:
    start: int  # first second of the span (epoch s)
    end: int  # end of the span, exclusive
    downloads: int  # every download in the span, exact
    windows: int  # windows stored in the span
    entries: list[TopEntry]
    others_max: int  # the most any project not listed can have had
    exact: bool  # every entry exact and no project left out can have had more than the last one

    def to_json(self) -> dict:
        from pypi_pulse.events import iso_second

        return {
            "start": iso_second(self.start),
            "end": iso_second(self.end),
            "seconds": self.end - self.start,
            "windows": self.windows,
            "downloads": self.downloads,
            "exact": self.exact,
            "others_max": self.others_max,
            "data": [
                {"project": e.project, "downloads": e.downloads, "downloads_max": e.downloads_max, "exact": e.exact}
                for e in self.entries
            ],
        }


def _unlisted_cap(w: WindowRow) -> int:
    """The most downloads a project missing from this window's top can have had in its second."""
    if len(w.top) >= w.unique_packages:
        return 0  # every project of the second is listed
    tenth = min(n for _, n in w.top) if w.top else w.downloads
    return min(tenth, w.downloads - sum(n for _, n in w.top))


def top_of(windows: Iterable[WindowRow], start: int, end: int, n: int = TOP_N) -> LiveTop:
    """The top `n` over the windows with start <= second < end, ranked by proven downloads, ties by name."""
    ws = [w for w in windows if start <= w.start < end]
    known: dict[str, int] = {}
    slack: dict[str, int] = {}  # a listed project's cap summed over the seconds it was not listed
    caps = 0
    for w in ws:
        cap = _unlisted_cap(w)
        caps += cap
        listed = set()
        for p, k in w.top:
            known[p] = known.get(p, 0) + k
            listed.add(p)
            slack[p] = slack.get(p, 0) - cap  # undone below: this second is not slack for p
    for p in known:
        slack[p] += caps
    ranked = sorted(known, key=lambda p: (-known[p], p))
    chosen, rest = ranked[:n], ranked[n:]
    entries = [TopEntry(p, known[p], known[p] + slack[p], slack[p] == 0) for p in chosen]
    # a project never listed can have had at most `caps`; a listed one left out at most its own upper bound
    others_max = max([caps] + [known[p] + slack[p] for p in rest]) if ws else 0
    exact = all(e.exact for e in entries) and (not entries or entries[-1].downloads >= others_max)
    return LiveTop(start, end, sum(w.downloads for w in ws), len(ws), entries, others_max, exact)
