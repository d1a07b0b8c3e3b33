"""Every country's top packages of a period at once, for the hover text of the Countries map.

`summaries.country_top` answers one country exactly, with a few queries; the map needs some 200 countries in one
callback, so this reads, for the whole period and every country together, the summaries' daily tops and bounds
(one grouped query each per run of summarised days) and, for days not summarised yet (the day in progress), each
country's top `TOP_K` + 1 packages computed in SQL. A project's downloads are exact when it is in every day's top;
otherwise they are a lower bound, and the bounds say how far off they can be. `CountryTop.exact` is True when
the listed packages, their order and their figures are exactly what the full scan gives; the dashboard marks the
others (a click gives the exact list).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.queries import days_between
from pypi_pulse.sink.rollup import FOLDED_CATEGORY
from pypi_pulse.sink.summaries import TOP_K, _segments, current_summaries

_SEGMENT_TOPS = (
    "SELECT category, project, n FROM (SELECT category, project, SUM(downloads) AS n, "
    "ROW_NUMBER() OVER (PARTITION BY category ORDER BY SUM(downloads) DESC, project) AS r FROM daily "
    "WHERE dimension = 'country' AND day >= ? AND day <= ? GROUP BY category, project) t WHERE r <= ?"
)


@dataclass(frozen=True)
class CountryTop:
    rows: list[tuple[str, int]]  # (project, downloads), largest first, ties by name
    exact: bool


def all_country_tops(sink: Sink, start: str, end: str, k: int = 5) -> dict[str, CountryTop]:
    """{country: its top `k` projects over [start, end]} for every country with downloads (k <= TOP_K)."""
    k = max(1, min(int(k), TOP_K))
    summarised = set(current_summaries(sink, start, end))
    lower: dict[str, Counter] = defaultdict(Counter)  # country -> project -> downloads known
    present: dict[str, Counter] = defaultdict(Counter)  # country -> project -> days (or segments) it is known for
    bound: Counter = Counter()  # country -> the most a project can have on the days it is not known for
    worst: Counter = Counter()  # country -> the largest bound of one day (or segment)
    units = 0  # summarised days plus unsummarised segments: a project known for all of them is exact
    for a, b in _segments(start, end, set(days_between(start, end)) - summarised):
        units += len(days_between(a, b))
        for cc, p, n, days in sink.query(
            "SELECT country, project, SUM(downloads), COUNT(*) FROM country_day_top "
            "WHERE day >= ? AND day <= ? GROUP BY country, project",
            (a, b),
        ):
            lower[cc][p] += int(n)
            present[cc][p] += int(days)
        for cc, n, most in sink.query(
            "SELECT country, SUM(bound), MAX(bound) FROM country_day_bound "
            "WHERE day >= ? AND day <= ? GROUP BY country",
            (a, b),
        ):
            bound[cc] += int(n)
            worst[cc] = max(worst[cc], int(most))
    for a, b in _segments(start, end, summarised):
        units += 1
        by_country: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for cc, p, n in sink.history_query(_SEGMENT_TOPS, (a, b, TOP_K + 1)):
            if cc != FOLDED_CATEGORY:
                by_country[cc].append((p, int(n)))
        for cc, rows in by_country.items():
            rows.sort(key=lambda kv: (-kv[1], kv[0]))
            for p, n in rows[:TOP_K]:
                lower[cc][p] += n
                present[cc][p] += 1
            day_bound = rows[TOP_K][1] if len(rows) > TOP_K else 0
            bound[cc] += day_bound
            worst[cc] = max(worst[cc], day_bound)
    return {("ZZ" if cc == "" else cc): _rank(lower[cc], present[cc], bound[cc], worst[cc], units, k) for cc in lower}


def _rank(lower: Counter, present: Counter, bound: int, worst: int, units: int, k: int) -> CountryTop:
    """The top `k` by known downloads, exact when no other project can reach the last of them: a project missing
    from some days' tops has at most its known downloads plus, for each such day, that day's bound (at most
    `worst`; all days' together at most `bound`)."""
    ranked = sorted(((p, n) for p, n in lower.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))
    chosen, others = ranked[:k], ranked[k:]
    known = {p for p in lower if present[p] >= units or bound == 0}  # exact figures
    if not chosen:
        return CountryTop([], bound == 0)
    last_p, last_n = chosen[-1]
    exact = all(p in known for p, _ in chosen)
    if exact:
        if len(chosen) < k:
            exact = bound == 0  # another project may exist with downloads only on days it was not in the top
        else:
            exact = bound < last_n  # a project in no top at all has at most `bound`
            for p, n in others:
                if p in known:
                    exact = exact and (-n, p) > (-last_n, last_p)
                else:
                    exact = exact and n + min(bound, (units - present[p]) * worst) < last_n
    return CountryTop(chosen, exact)
