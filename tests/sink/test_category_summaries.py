"""Per-(country, category) daily summaries, every country's top 5 at once and a category's top packages: the same
figures as sums computed here from the counts the test wrote, whether the days are summarised or not, and a day
summarised twice holds the same rows."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta

from pypi_pulse.categories import category_map
from pypi_pulse.sink import category_stats, summaries
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.country_tops import all_country_tops
from pypi_pulse.sink.model import RollupBucket

FIRST = date(2026, 9, 1)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(12)]
COUNTRIES = ["US", "GB", "DE", "IN", None]  # None: an unknown country, stored as '' and shown as ZZ
UNCATEGORISED = [f"proj-{k:02d}" for k in range(30)]


def _written() -> tuple[list[RollupBucket], dict]:
    """Buckets of known counts (categorised and other projects, each country, some days only) and those counts."""
    rng = random.Random(7)
    cmap = category_map()
    projects = sorted(cmap)[::3] + UNCATEGORISED
    all_counts, buckets = {}, []
    rng.shuffle(projects)
    weight = {p: 5000 / (rank + 1) ** 1.2 for rank, p in enumerate(projects)}  # a heavy tail, as on PyPI
    for i, day in enumerate(DAYS):
        counts = {}
        for rank, p in enumerate(projects):
            total = 0
            for cc in COUNTRIES:
                if rank > 10 and rng.random() < 0.15:  # the tail is missing from some countries on some days
                    continue
                n = max(1, int(weight[p] * rng.uniform(0.7, 1.3))) * (5 if cc == "US" else 1)
                counts[(day, p, "country", cc)] = n
                total += n
            counts[(day, p, "overall", None)] = total
            counts[(day, p, "with_mirrors", None)] = total
        buckets.append(RollupBucket(1788220800 + i * 86400, counts))
        all_counts.update(counts)
    return buckets, all_counts


def _truth_country_categories(counts: dict, start: str, end: str) -> dict:
    cmap = category_map()
    out: dict = {}
    for (d, p, dim, cc), n in counts.items():
        if dim == "country" and start <= d <= end and p in cmap:
            c = cc or "ZZ"
            out.setdefault(c, Counter())[cmap[p]] += n
    return {c: dict(v) for c, v in out.items()}


def _truth_tops(counts: dict, start: str, end: str, k: int) -> dict:
    per: dict = {}
    for (d, p, dim, cc), n in counts.items():
        if dim == "country" and start <= d <= end:
            per.setdefault(cc or "ZZ", Counter())[p] += n
    return {c: sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[:k] for c, v in per.items()}


def test_country_category_figures_equal_the_written_counts_summarised_or_not(sink_url, tmp_path):
    buckets, counts = _written()
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets)
        assert category_stats.category_countries(db, DAYS[0], DAYS[-1]) == _truth_country_categories(
            counts, DAYS[0], DAYS[-1]
        )
        assert summaries.summarize(db, before_day=DAYS[8]) == 8  # days 0-7 summarised, 8-11 read from the rollups
        first = db.query("SELECT day, country, category, downloads FROM category_country_daily ORDER BY 1, 2, 3")
        for start, end in [(DAYS[0], DAYS[-1]), (DAYS[2], DAYS[5]), (DAYS[6], DAYS[9]), (DAYS[10], DAYS[11])]:
            assert category_stats.category_countries(db, start, end) == _truth_country_categories(counts, start, end)
        # one summarised day's rows, by hand: that day's categorised country counts
        cmap = category_map()
        want = Counter()
        for (d, p, dim, cc), n in counts.items():
            if d == DAYS[3] and dim == "country" and p in cmap:
                want[(cc or "", cmap[p])] += n
        got = {(cc, c): n for d, cc, c, n in first if d == DAYS[3]}
        assert got == dict(want)
        # redone: the same rows, not doubled
        db._execute_in_transaction([("DELETE FROM day_summaries WHERE day = ?", (DAYS[3],))])
        assert summaries.summarize(db, before_day=DAYS[8]) == 1
        assert (
            db.query("SELECT day, country, category, downloads FROM category_country_daily ORDER BY 1, 2, 3") == first
        )


def test_every_countrys_top_five_at_once_equals_the_full_scan(sink_url, tmp_path):
    buckets, counts = _written()
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets)
        summaries.summarize(db, before_day=DAYS[8])
        exact = 0
        for start, end in [(DAYS[0], DAYS[-1]), (DAYS[0], DAYS[7]), (DAYS[5], DAYS[10]), (DAYS[9], DAYS[11])]:
            truth = _truth_tops(counts, start, end, 5)
            got = all_country_tops(db, start, end, 5)
            assert set(got) == set(truth)
            for cc, top in got.items():
                if top.exact:
                    assert top.rows == truth[cc], (cc, start, end)
                    exact += 1
                else:  # approximate: known downloads, never above the truth
                    totals = Counter()
                    for (d, q, dim, c), n in counts.items():
                        if dim == "country" and (c or "ZZ") == cc and start <= d <= end:
                            totals[q] += n
                    assert all(n <= totals[p] for p, n in top.rows), (cc, start, end)
        assert exact >= 12  # with 48 projects a country, every answer here can be vouched for


def test_a_categorys_top_packages_are_its_members_by_downloads(sink_url, tmp_path):
    buckets, counts = _written()
    cmap = category_map()
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets)
        for category in sorted(set(cmap.values())):
            want = Counter()
            for (d, p, dim, _c), n in counts.items():
                if dim == "overall" and cmap.get(p) == category and DAYS[1] <= d <= DAYS[6]:
                    want[p] += n
            ranked = sorted(((p, n) for p, n in want.items() if n), key=lambda kv: (-kv[1], kv[0]))
            assert category_stats.category_top(db, category, DAYS[1], DAYS[6], 3) == ranked[:3]
