"""Summaries of complete days answer long-period questions exactly as the full scan does, and are never trusted
once the day they summarise has changed."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from pypi_pulse.categories import category_map
from pypi_pulse.sink import queries, summaries
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket

FIRST = date(2026, 9, 1)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(30)]
COUNTRIES = ["US", "DE", "CN", "IN", "BR"]


def day_bucket(i: int, counts: dict) -> RollupBucket:
    return RollupBucket(1788220800 + i * 86400, counts)  # the bucket id: that day's midnight (2026-09-01 + i)


def history(seed: int, projects: list[str]) -> list[RollupBucket]:
    """A heavy-tailed mix whose leaders change from day to day, so that tops, bounds and ties all matter."""
    rng = random.Random(seed)
    weight = {p: 1000 / (rank + 1) ** 1.1 for rank, p in enumerate(projects)}
    out = []
    for i, day in enumerate(DAYS):
        counts = {}
        for p in projects:
            total = 0
            for cc in COUNTRIES:
                n = int(weight[p] * rng.uniform(0.2, 1.8) * (3 if cc == "US" else 1))
                if n:
                    counts[(day, p, "country", cc)] = n
                    total += n
            if total:
                counts[(day, p, "overall", None)] = total
                counts[(day, p, "with_mirrors", None)] = total
        out.append(day_bucket(i, counts))
    return out


@pytest.fixture
def spied_scans(monkeypatch):
    """Counts the full-range fallbacks of `country_top` (a scan over exactly the asked range)."""
    full = []
    real = summaries.scan_country_top

    def spy(sink, cc, segments, limit):
        full.append(segments)
        return real(sink, cc, segments, limit)

    monkeypatch.setattr(summaries, "scan_country_top", spy)
    return full


def test_country_top_from_summaries_equals_the_full_scan(sink_url, tmp_path, spied_scans):
    projects = [f"proj-{k:03d}" for k in range(80)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(history(1, projects))
        assert summaries.summarize(db, before_day=DAYS[-2]) == 28  # the last two days stay unsummarised
        assert summaries.summarize(db, before_day=DAYS[-2]) == 0
        rng = random.Random(2)
        cases = [(DAYS[0], DAYS[-1])] + [tuple(sorted(rng.sample(DAYS, 2))) for _ in range(25)]
        asked = 0
        for start, end in cases:
            for cc in COUNTRIES + ["JP"]:  # JP: never downloaded there
                for limit in (1, 5, 10, 25, 26):
                    assert queries.country_top(db, cc, start, end, limit) == _scan(db, cc, start, end, limit), (
                        cc,
                        start,
                        end,
                        limit,
                    )
                    asked += 1
        fallbacks = sum(1 for segs in spied_scans if len(segs) == 1 and segs[0] in cases)
        assert fallbacks < asked / 4, f"{fallbacks} of {asked} answers needed the full scan"


def _scan(db, cc, start, end, limit):
    rows = db.history_query(
        "SELECT project, SUM(downloads) AS n FROM daily WHERE dimension = 'country' AND category = ? "
        "AND day >= ? AND day <= ? GROUP BY project ORDER BY n DESC, project LIMIT ?",
        (cc, start, end, limit),
    )
    return [(p, int(n)) for p, n in rows]


def test_a_changed_day_is_not_read_from_its_summary_until_summarised_again(sink_url, tmp_path):
    projects = [f"proj-{k:03d}" for k in range(40)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(history(3, projects))
        summaries.summarize(db, before_day=DAYS[-1])
        assert DAYS[5] in summaries.current_summaries(db, DAYS[0], DAYS[-1])
        # a late bucket makes an unknown project the day's leader in Germany
        db.write_buckets(
            [
                RollupBucket(
                    1788220800 + 5 * 86400 + 60,
                    {
                        (DAYS[5], "newcomer", "country", "DE"): 10**6,
                        (DAYS[5], "newcomer", "overall", None): 10**6,
                        (DAYS[5], "newcomer", "with_mirrors", None): 10**6,
                    },
                )
            ]
        )
        assert DAYS[5] not in summaries.current_summaries(db, DAYS[0], DAYS[-1])
        assert queries.country_top(db, "DE", DAYS[0], DAYS[-1], 3) == _scan(db, "DE", DAYS[0], DAYS[-1], 3)
        assert queries.country_top(db, "DE", DAYS[0], DAYS[-1], 1)[0][0] == "newcomer"
        assert summaries.summarize(db, before_day=DAYS[-1]) == 1  # only the changed day is redone
        assert DAYS[5] in summaries.current_summaries(db, DAYS[0], DAYS[-1])
        assert queries.country_top(db, "DE", DAYS[0], DAYS[-1], 3) == _scan(db, "DE", DAYS[0], DAYS[-1], 3)


def test_folding_a_day_makes_its_summary_stale(sink_url, tmp_path):
    projects = [f"proj-{k:03d}" for k in range(40)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(history(4, projects))
        summaries.summarize(db, before_day=DAYS[-1])
        assert db.compact(200) > 0  # small projects' country rows fold into 'other'
        assert summaries.current_summaries(db, DAYS[0], DAYS[-2]) == {}
        for cc in COUNTRIES:
            assert queries.country_top(db, cc, DAYS[0], DAYS[-1], 10) == _scan(db, cc, DAYS[0], DAYS[-1], 10)
        assert summaries.summarize(db, before_day=DAYS[-1]) == len(DAYS) - 1
        for cc in COUNTRIES:
            assert queries.country_top(db, cc, DAYS[0], DAYS[-1], 10) == _scan(db, cc, DAYS[0], DAYS[-1], 10)


def test_downloads_by_category_match_the_packages_of_each_category(sink_url, tmp_path):
    cmap = category_map()
    projects = sorted(cmap)[:60] + ["not-in-the-map"]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(history(5, projects))
        before = queries.downloads_by_category(db, DAYS[0], DAYS[-1])  # nothing summarised yet
        summaries.summarize(db, before_day=DAYS[-3])
        after = queries.downloads_by_category(db, DAYS[0], DAYS[-1])
        expected: dict = {}
        for p, rows in queries.compare(db, [p for p in projects if p in cmap], DAYS[0], DAYS[-1]).items():
            for d, n in rows:
                expected.setdefault(cmap[p], {}).setdefault(d, 0)
                expected[cmap[p]][d] += n
        assert before == after == expected
        assert len(expected) > 1


def test_country_top_of_stable_leaders_reads_no_history_rows(sink_url, tmp_path, monkeypatch):
    """Leaders in every day's top are summed from the summaries alone; the bounds prove nobody else can reach them."""
    projects = [f"proj-{k:03d}" for k in range(60)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(history(6, projects))
        summaries.summarize(db, before_day=DAYS[-1])
        expected = {cc: _scan(db, cc, DAYS[0], DAYS[-2], 5) for cc in COUNTRIES}
        read: list[str] = []
        real = db.history_query

        def spy(sql, params=()):
            if "FROM daily " in sql + " ":
                read.append(sql)
            return real(sql, params)

        monkeypatch.setattr(db, "history_query", spy)
        for cc in COUNTRIES:
            assert queries.country_top(db, cc, DAYS[0], DAYS[-2], 5) == expected[cc]
        assert read == []
        # the unsummarised last day is read, and only it
        assert queries.country_top(db, "US", DAYS[0], DAYS[-1], 5) == _scan(db, "US", DAYS[0], DAYS[-1], 5)
        assert read and all("day >= ?" in sql or "day IN" in sql for sql in read)
