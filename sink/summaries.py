"""Summaries of complete days, so that questions about long periods read thousands of rows, not millions.

"A country's top packages over 180 days" sums one row per (project, day) for every project downloaded there:
about 2.7 million rows for the US at PyPI's mix. Once a day is complete, `summarize` stores for it, per country,
the top `TOP_K` projects and a *bound*: the downloads of the next one, which no project outside the top can
exceed. It also stores the day's downloads per package category, and per country and package category (the
dashboard's Categories tab: each category's share of the world's and of one country's downloads).

Reads stay exact. `country_top` sums the candidates (every project in a summarised day's top, plus the leaders of
the days that are not summarised yet) exactly, from `daily`, and accepts the result only if its last entry beats
what any other project could have reached (the sum of the bounds, plus the best unsummarised remainder);
otherwise, or when asked for more than `TOP_K`, it falls back to the full scan. A summary records the figures
it was made from (the day's overall downloads, whether its long tail was folded, the category map's digest);
when a late event, a backfill or a fold changes them, the summary is ignored until `summarize` redoes it.

The summaries are tables of the sink's database (`sink.query`); the rows they summarise are the history's files
(`sink.history_query`, sink/history.py). No engine holds both, so a question that needs both reads each side and
combines them here.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Optional

from pypi_pulse.categories import category_map, map_digest
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.queries import days_between
from pypi_pulse.sink.rollup import FOLDED_CATEGORY

TOP_K = 25  # projects kept per country and day; `country_top` answers up to this many from summaries
_CHUNK = 400  # bound on `IN (...)` lists, well under every backend's parameter limit
_MAX_SEEKS = 250_000  # candidates x days beyond which the scan is cheaper than the exact candidate sums

SUMMARY_LAYOUT = "2"  # what a summary holds: bumped when a table is added, so that older summaries are redone

_TOTALS = (  # the history's side of a day's state: its overall downloads, and whether its long tail is folded
    "SELECT t.day, t.downloads, CASE WHEN c.day IS NULL THEN 0 ELSE 1 END "
    "FROM daily_totals t LEFT JOIN compacted_days c ON c.day = t.day "
    "WHERE t.dimension = 'overall' AND t.category = ''"
)


def _state(sink: Sink, start: Optional[str], end: Optional[str]) -> list[tuple]:
    """(day, overall, compacted, summary's overall, summary's compacted, summary's digest) of every day of the
    history in [start, end] (all days when None), the summary's fields None for a day without one: the day's
    figures from the history, its summary from the sink's database."""
    if start is None or end is None:
        days = sink.history_query(_TOTALS)
        made = sink.query("SELECT day, overall, compacted, categories FROM day_summaries")
    else:
        days = sink.history_query(f"{_TOTALS} AND t.day >= ? AND t.day <= ?", (start, end))
        made = sink.query(
            "SELECT day, overall, compacted, categories FROM day_summaries WHERE day >= ? AND day <= ?", (start, end)
        )
    summary = {d: (o, c, dg) for d, o, c, dg in made}
    return [(day, overall, compacted, *summary.get(day, (None, None, None))) for day, overall, compacted in days]


def _segments(start: str, end: str, covered: set[str]) -> list[tuple[str, str]]:
    """The inclusive day ranges of [start, end] not in `covered`."""
    out, run = [], None
    for d in days_between(start, end):
        if d in covered:
            if run:
                out.append(run)
                run = None
        else:
            run = (run[0], d) if run else (d, d)
    if run:
        out.append(run)
    return out


def _chunks(items: list, n: int = _CHUNK):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _marks(items) -> str:
    return ", ".join("?" for _ in items)


def summary_digest() -> str:
    """What a current summary was made with: the category map's version and the summary layout. Stored in
    `day_summaries.categories`; a day summarised with anything else is redone by `summarize`, and its category
    figures are not read (its country tops stay valid: they depend on neither)."""
    return f"{map_digest()}/{SUMMARY_LAYOUT}"


def categorised_country_rows(sink: Sink, days_sql: str, day_params: tuple) -> Counter:
    """{(country, category): downloads} of the category map's projects over the days `days_sql` selects, from
    their per-country rows. A project whose country detail was folded (its `other` row) has no country to count
    in, so it is left out here and in every share computed from these figures."""
    cmap = category_map()
    out: Counter = Counter()
    for chunk in _chunks(sorted(cmap)):
        for p, cc, n in sink.history_query(
            f"SELECT project, category, SUM(downloads) FROM daily WHERE project IN ({_marks(chunk)}) "
            f"AND dimension = 'country' AND {days_sql} GROUP BY project, category",
            (*chunk, *day_params),
        ):
            if cc != FOLDED_CATEGORY:
                out[(cc, cmap[p])] += int(n)
    return out


# ---- writing ----------------------------------------------------------------------------------------------------
def summarize(sink: Sink, before_day: Optional[str] = None, max_days: Optional[int] = None) -> int:
    """Summarise the complete days (before `before_day`, by default the day in progress) that have no current
    summary, oldest first, at most `max_days` of them; returns how many were (re)done."""
    from pypi_pulse.sink.queries import current_day

    before = before_day or current_day(sink)
    digest = summary_digest()
    todo = [
        (day, overall, compacted)
        for day, overall, compacted, s_overall, s_compacted, s_digest in _state(sink, None, None)
        if day < before and (s_overall != overall or s_compacted != compacted or s_digest != digest)
    ]
    todo.sort()
    for day, overall, compacted in todo[:max_days]:
        _summarize_day(sink, day, int(overall), int(compacted), digest)
    return len(todo[:max_days])


def _summarize_day(sink: Sink, day: str, overall: int, compacted: int, digest: str) -> None:
    # every country's top TOP_K + 1 in one pass over the day's country rows (one query, not one per country)
    ranked = sink.history_query(
        "SELECT category, project, downloads, rank FROM (SELECT category, project, downloads, ROW_NUMBER() OVER "
        "(PARTITION BY category ORDER BY downloads DESC, project) AS rank FROM daily "
        "WHERE dimension = 'country' AND day = ?) WHERE rank <= ? ORDER BY category, rank",
        (day, TOP_K + 1),
    )
    tops, bounds = [], []
    next_best: dict[str, int] = {}
    for cc, p, n, rank in ranked:
        next_best.setdefault(cc, 0)
        if rank <= TOP_K:
            tops.append((cc, day, p, int(n)))
        else:
            next_best[cc] = int(n)
    bounds = [(cc, day, n) for cc, n in sorted(next_best.items())]
    cmap = category_map()
    per_category: Counter = Counter()
    for project, n in sink.history_query(
        "SELECT project, downloads FROM daily WHERE day = ? AND dimension = 'overall'", (day,)
    ):
        c = cmap.get(project)
        if c is not None:
            per_category[c] += int(n)
    per_country = categorised_country_rows(sink, "day = ?", (day,))
    sink._execute_many_in_transaction(
        [
            ("DELETE FROM country_day_top WHERE day = ?", [(day,)]),
            ("DELETE FROM country_day_bound WHERE day = ?", [(day,)]),
            ("DELETE FROM category_daily WHERE day = ?", [(day,)]),
            ("DELETE FROM category_country_daily WHERE day = ?", [(day,)]),
            ("DELETE FROM day_summaries WHERE day = ?", [(day,)]),
            ("INSERT INTO country_day_top (country, day, project, downloads) VALUES (?, ?, ?, ?)", tops),
            ("INSERT INTO country_day_bound (country, day, bound) VALUES (?, ?, ?)", bounds),
            (
                "INSERT INTO category_daily (day, category, downloads) VALUES (?, ?, ?)",
                [(day, c, n) for c, n in sorted(per_category.items())],
            ),
            (
                "INSERT INTO category_country_daily (day, country, category, downloads) VALUES (?, ?, ?, ?)",
                [(day, cc, c, n) for (cc, c), n in sorted(per_country.items()) if n],
            ),
            (
                "INSERT INTO day_summaries (day, overall, compacted, categories, computed_at) VALUES (?, ?, ?, ?, ?)",
                [(day, overall, compacted, digest, time.time())],
            ),
        ]
    )


# ---- reading ----------------------------------------------------------------------------------------------------
def current_summaries(sink: Sink, start: str, end: str) -> dict[str, str]:
    """{day: category-map digest} of the days in [start, end] whose summary matches the data as it is now."""
    return {
        day: s_digest
        for day, overall, compacted, s_overall, s_compacted, s_digest in _state(sink, start, end)
        if s_overall == overall and s_compacted == compacted
    }


def scan_country_top(
    sink: Sink, cc: str, segments: list[tuple[str, str]], limit: Optional[int]
) -> list[tuple[str, int]]:
    """The plain answer: every project's downloads in the country over the segments, largest first."""
    totals: Counter = Counter()
    for a, b in segments:
        for p, n in sink.history_query(
            "SELECT project, SUM(downloads) FROM daily WHERE dimension = 'country' AND category = ? "
            "AND day >= ? AND day <= ? GROUP BY project",
            (cc, a, b),
        ):
            totals[p] += int(n)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked if limit is None else ranked[:limit]


def country_top(sink: Sink, cc: str, start: str, end: str, limit: int) -> list[tuple[str, int]]:
    """That country's `limit` most downloaded projects over [start, end], exactly as the full scan ranks them.

    A candidate's downloads on the summarised days where it is in the day's top are the summary's (the same rows'
    figures); on the others it had at most that day's bound. Only the candidates those bounds leave able to reach
    the top are read from the history, and only for the days they miss, so a long period of stable leaders costs
    a few thousand summary rows and no scan of the history."""
    if limit > TOP_K:
        return scan_country_top(sink, cc, [(start, end)], limit)
    summarised = sorted(current_summaries(sink, start, end))
    if not summarised:
        return scan_country_top(sink, cc, [(start, end)], limit)
    s_set = set(summarised)
    rest = scan_country_top(sink, cc, _segments(start, end, s_set), None)  # days without a summary: all projects
    unsummarised = dict(rest)
    first, last = summarised[0], summarised[-1]
    known: Counter = Counter()  # candidate -> its downloads on the summarised days where it is in the top
    present: dict[str, set[str]] = defaultdict(set)  # candidate -> those days
    for d, p, n in sink.query(
        "SELECT day, project, downloads FROM country_day_top WHERE country = ? AND day >= ? AND day <= ?",
        (cc, first, last),
    ):
        if d in s_set:
            known[p] += int(n)
            present[p].add(d)
    day_bound = {
        d: int(b)
        for d, b in sink.query(
            "SELECT day, bound FROM country_day_bound WHERE country = ? AND day >= ? AND day <= ?", (cc, first, last)
        )
        if d in s_set
    }
    bound = sum(day_bound.values())
    candidates = sorted(set(present) | {p for p, _ in rest[:TOP_K]})
    rest_bound = rest[TOP_K][1] if len(rest) > TOP_K else 0  # no other unsummarised remainder is larger
    lower = {p: known[p] + unsummarised.get(p, 0) for p in candidates}
    missing = {p: [d for d in summarised if d not in present[p]] for p in candidates}
    upper = {p: lower[p] + sum(day_bound.get(d, 0) for d in missing[p]) for p in candidates}
    by_lower = sorted(lower.values(), reverse=True)
    threshold = by_lower[limit - 1] if len(by_lower) >= limit else 0
    # a candidate whose most possible stays under `limit` others' least cannot be in the top: not read
    unknown = {p: missing[p] for p in candidates if missing[p] and upper[p] >= threshold and upper[p] > 0}
    if sum(len(days) for days in unknown.values()) > _MAX_SEEKS:
        return scan_country_top(sink, cc, [(start, end)], limit)
    totals = {p: lower[p] for p in candidates if not missing[p] or p in unknown}
    for p, n in _missing_days_sums(sink, cc, unknown):
        totals[p] += n
    ranked = sorted(((p, n) for p, n in totals.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))
    beyond = bound + rest_bound  # the most any project that is not a candidate can have
    left_out = max((n for p, n in upper.items() if p not in totals), default=0)  # the most of a candidate not read
    if len(ranked) >= limit and ranked[limit - 1][1] > max(beyond, left_out):
        return ranked[:limit]
    if len(ranked) < limit and beyond == 0 and left_out == 0:
        return ranked  # no project outside the candidates was downloaded there at all
    return scan_country_top(sink, cc, [(start, end)], limit)


def _missing_days_sums(sink: Sink, cc: str, unknown: dict[str, list[str]]):
    """(project, downloads) in the country on exactly the days listed for each project (their days outside the
    summaries' tops), read from the history in one pass per chunk of projects and days."""
    if not unknown:
        return
    wanted = {(p, d) for p, days in unknown.items() for d in days}
    all_days = sorted({d for days in unknown.values() for d in days})
    for projects in _chunks(sorted(unknown)):
        for days in _chunks(all_days):
            for p, d, n in sink.history_query(
                f"SELECT project, day, SUM(downloads) FROM daily WHERE dimension = 'country' AND category = ? "
                f"AND day IN ({_marks(days)}) AND project IN ({_marks(projects)}) GROUP BY project, day",
                (cc, *days, *projects),
            ):
                if (p, d) in wanted:
                    yield p, int(n)


def downloads_by_category(sink: Sink, start: str, end: str) -> dict[str, dict[str, int]]:
    """{category: {day: downloads}} of the packages in the shipped category map (without mirrors)."""
    digest = summary_digest()
    summarised = {d for d, dg in current_summaries(sink, start, end).items() if dg == digest}
    out: dict[str, dict[str, int]] = defaultdict(dict)
    if summarised:
        for d, c, n in sink.query(
            "SELECT day, category, downloads FROM category_daily WHERE day >= ? AND day <= ?",
            (min(summarised), max(summarised)),
        ):
            if d in summarised:
                out[c][d] = int(n)
    cmap = category_map()
    projects = sorted(cmap)
    for a, b in _segments(start, end, summarised):
        days, day_params = sink.project_days(a, b)
        for chunk in _chunks(projects):
            for p, d, n in sink.history_query(
                f"SELECT project, day, downloads FROM daily WHERE project IN ({_marks(chunk)}) "
                f"AND dimension = 'overall' AND {days}",
                (*chunk, *day_params),
            ):
                c = cmap[p]
                out[c][d] = out[c].get(d, 0) + int(n)
    return dict(out)
