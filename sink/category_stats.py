"""What the Categories tab reads beyond each category's daily downloads (summaries.downloads_by_category): every
country's downloads per category over a period, and a category's most downloaded packages.

Per-country figures come from the summaries of complete days (`category_country_daily`, one row per country and
category a day) where they are current, and from the category map's per-country rollup rows for the other days
(the day in progress, days summarised with another map): the same figures either way (tests/sink).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Optional

from pypi_pulse.categories import category_map
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.queries import days_between
from pypi_pulse.sink.schema import from_db_category
from pypi_pulse.sink.summaries import (
    _chunks,
    _marks,
    _segments,
    categorised_country_rows,
    current_summaries,
    summary_digest,
)

UNKNOWN_COUNTRY = "ZZ"


def category_countries(sink: Sink, start: str, end: str) -> dict[str, dict[str, int]]:
    """{country: {category: downloads}} over [start, end]; the unknown country is 'ZZ'."""
    digest = summary_digest()
    summarised = {d for d, dg in current_summaries(sink, start, end).items() if dg == digest}
    totals: Counter = Counter()
    others = set(days_between(start, end)) - summarised
    for a, b in _segments(start, end, others):  # the runs of summarised days
        for cc, c, n in sink.query(
            "SELECT country, category, SUM(downloads) FROM category_country_daily "
            "WHERE day >= ? AND day <= ? GROUP BY country, category",
            (a, b),
        ):
            totals[(cc, c)] += int(n)
    for a, b in _segments(start, end, summarised):
        days_sql, day_params = sink.project_days(a, b)
        totals.update(categorised_country_rows(sink, days_sql, day_params))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for (cc, c), n in totals.items():
        country = from_db_category(cc) or UNKNOWN_COUNTRY
        out[country][c] = out[country].get(c, 0) + n
    return dict(out)


def category_top(sink: Sink, category: str, start: str, end: str, limit: Optional[int] = None) -> list[tuple[str, int]]:
    """The category's packages by downloads (without mirrors) over [start, end], largest first, ties by name."""
    members = sorted(p for p, c in category_map().items() if c == category)
    totals: Counter = Counter()
    series = sink.history_series(start, end, lambda s, days: s.rows(members, "overall", days))
    if series is not None:  # the history reader's in-memory series: the same rows (sink/history_series.py)
        for p, rows in series.items():
            totals[p] += sum(n for _, n in rows)
    else:
        days_sql, day_params = sink.project_days(start, end)
        for chunk in _chunks(members):
            for p, n in sink.history_query(
                f"SELECT project, SUM(downloads) FROM daily WHERE project IN ({_marks(chunk)}) "
                f"AND dimension = 'overall' AND {days_sql} GROUP BY project",
                (*chunk, *day_params),
            ):
                totals[p] += int(n)
    ranked = sorted(((p, n) for p, n in totals.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))
    return ranked if limit is None else ranked[:limit]
