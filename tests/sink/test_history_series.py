"""The history reader's in-memory `overall`/`with_mirrors` series answer every question exactly as the SQL over the
history's files does, and follow the files as they change: new blocks (sharded parts too), a compaction, a
backfill replacing a day, retention."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from pypi_pulse.categories import category_map
from pypi_pulse.sink import category_stats, queries
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket

FIRST = date(2026, 9, 1)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(8)]
MIDNIGHT = 1788220800  # 2026-09-01T00:00:00Z


def block(day_index: int, minute: int, counts: dict, part=None) -> RollupBucket:
    return RollupBucket(MIDNIGHT + day_index * 86400 + minute * 600, counts, 600, part)


def counts_of(rng: random.Random, day: str, projects: list[str], shard=None) -> dict:
    out = {}
    for p in projects:
        if shard is not None and hash_shard(p) != shard:
            continue
        if rng.random() < 0.2:
            continue  # not downloaded in this block
        n = rng.randint(0, 50)  # zero counts are rows too
        out[(day, p, "overall", None)] = n
        out[(day, p, "with_mirrors", None)] = n + rng.randint(0, 3)
        out[(day, p, "country", rng.choice(["US", "DE"]))] = n
        out[(day, p, "python_minor", None)] = n
    return out


def hash_shard(project: str) -> int:
    return sum(map(ord, project)) % 2


def truth(db, projects, start, end):
    """What the SQL over the files answers, asked directly of the history."""
    out = {}
    for dim in ("overall", "with_mirrors"):
        for p in projects:
            out[(dim, p)] = [
                (d, int(n))
                for d, n in db.history_query(
                    "SELECT day, SUM(downloads) FROM daily WHERE project = ? AND dimension = ? AND day >= ? "
                    "AND day <= ? GROUP BY day ORDER BY day",
                    (p, dim, start, end),
                )
            ]
    top = [
        (p, int(n))
        for p, n in db.history_query(
            "SELECT project, SUM(downloads) AS n FROM daily WHERE dimension = 'overall' AND day >= ? AND day <= ? "
            "GROUP BY project ORDER BY n DESC, project",
            (start, end),
        )
    ]
    names = [r[0] for r in db.history_query("SELECT DISTINCT project FROM daily WHERE dimension = 'with_mirrors'")]
    return out, top, sorted(names)


def answers(db, projects, start, end):
    out = {}
    for dim in ("overall", "with_mirrors"):
        series = queries.compare(db, projects, start, end, dim)
        for p in projects:
            by_day = [(d, n) for d, _c, n in queries.daily_by_category(db, p, dim, start, end)]
            assert by_day == series[p]
            out[(dim, p)] = series[p]
    return out, queries.top_packages(db, start, end, None, 10**6), queries.package_names(db)


def assert_same(db, projects):
    for start, end in [(DAYS[0], DAYS[-1]), (DAYS[2], DAYS[4]), ("2000-01-01", "2100-01-01"), (DAYS[3], DAYS[3])]:
        assert answers(db, projects, start, end) == truth(db, projects, start, end), (start, end)
    for p in projects + ["never-downloaded"]:
        assert queries.known_package(db, p) == (p if p in truth(db, [], DAYS[0], DAYS[-1])[2] else None)


@pytest.fixture
def series_calls(monkeypatch):
    """Counts the questions the in-memory series answered (they return None when the files must answer)."""
    from pypi_pulse.sink.history_reader import HistoryReader

    answered = []
    real = HistoryReader.series_of

    def spy(self, first, last, answer):
        result = real(self, first, last, answer)
        answered.append(result is not None)
        return result

    monkeypatch.setattr(HistoryReader, "series_of", spy)
    return answered


def test_series_answer_as_the_files_do_while_the_history_changes(sink_url, tmp_path, series_calls):
    rng = random.Random(7)
    projects = [f"proj-{k:02d}" for k in range(30)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        # blocks of the first six days; days 4 and 5 as two shards' parts
        for i, day in enumerate(DAYS[:6]):
            for minute in range(3):
                if i >= 4:
                    for shard in (0, 1):
                        db.write_buckets([block(i, minute, counts_of(rng, day, projects, shard), (shard, 2))])
                else:
                    db.write_buckets([block(i, minute, counts_of(rng, day, projects))])
        assert_same(db, projects)
        # another block arrives: the answers follow it
        db.write_buckets([block(5, 10, {(DAYS[5], "proj-00", "overall", None): 1000})])
        assert dict(queries.compare(db, ["proj-00"], DAYS[5], DAYS[5]))["proj-00"][0][1] >= 1000
        assert_same(db, projects)
        # complete days compacted into day files; a backfill replaces day 1; retention drops day 0
        db.compact(0)
        db.backfill_day(DAYS[1], [("proj-03", "overall", None, 5), ("proj-03", "with_mirrors", None, 6)], "test")
        assert_same(db, projects)
        db.history.drop_through(DAYS[0])
        db.write_buckets([block(6, 0, counts_of(rng, DAYS[6], projects))])
        assert_same(db, projects)
    assert series_calls and all(series_calls)


def test_a_categorys_top_from_the_series_equals_the_sum_of_its_rows(sink_url, tmp_path, series_calls):
    cmap = category_map()
    category = sorted(set(cmap.values()))[0]
    members = sorted(p for p, c in cmap.items() if c == category)
    rng = random.Random(8)
    with open_sink(sink_url, history=tmp_path / "history") as db:
        for i, day in enumerate(DAYS[:4]):
            db.write_buckets([block(i, 0, counts_of(rng, day, members + ["not-in-the-map"]))])
        expected = sorted(
            (
                (p, sum(n for _, n in rows))
                for p, rows in queries.compare(db, members, DAYS[0], DAYS[3]).items()
                if sum(n for _, n in rows) > 0
            ),
            key=lambda kv: (-kv[1], kv[0]),
        )
        direct = {
            p: int(n)
            for p, n in db.history_query(
                "SELECT project, SUM(downloads) FROM daily WHERE dimension = 'overall' GROUP BY project"
            )
        }
        assert category_stats.category_top(db, category, DAYS[0], DAYS[3]) == expected
        assert dict(expected) == {p: n for p, n in direct.items() if p in members and n > 0}
    assert series_calls and all(series_calls)


def test_a_file_with_categories_in_these_dimensions_is_answered_from_the_files(sink_url, tmp_path, series_calls):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.backfill_day(DAYS[0], [("a", "overall", "odd", 3), ("a", "overall", None, 4)], "test")
        assert queries.daily_by_category(db, "a", "overall", DAYS[0], DAYS[0]) == [
            (DAYS[0], None, 4),
            (DAYS[0], "odd", 3),
        ]
    assert series_calls == [False]


def test_several_packages_countries_in_one_pass_equal_each_ones(sink_url, tmp_path):
    rng = random.Random(9)
    projects = [f"proj-{k:02d}" for k in range(6)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        for i, day in enumerate(DAYS[:3]):
            counts = counts_of(rng, day, projects)
            counts[(day, "proj-00", "country", None)] = 7  # an unknown country: 'ZZ', 7 a day
            db.write_buckets([block(i, 0, counts)])
        asked = ["Proj_01", "proj-00", "never-downloaded"]
        together = queries.countries_of(db, DAYS[0], DAYS[2], asked)
        assert together == {queries.normalize(p): queries.countries(db, DAYS[0], DAYS[2], p) for p in asked}
        assert ("ZZ", 21) in together["proj-00"] and together["never-downloaded"] == []


def test_a_day_file_replaced_under_the_same_name_is_read_afresh(sink_url, tmp_path):
    """Footers are cached by path and modification second: a backfill replacing a day within that second must not be
    read with the old footer."""
    with open_sink(sink_url, history=tmp_path / "history") as db:
        for n in range(1, 6):
            rows = [(f"p{k:04d}", "country", "US", n) for k in range(40 * n)]  # a different file each time
            db.backfill_day(DAYS[0], rows, "test")
            assert db.history_query(
                "SELECT COUNT(*), SUM(downloads) FROM daily WHERE dimension = 'country' AND project >= 'p0000'"
            ) == [(40 * n, 40 * n * n)]


def held_days(reader) -> list[str]:
    return [d.day for d in reader.days if reader.series.servable([d.day])]


def test_a_budget_holds_the_newest_days_and_the_files_answer_the_rest(sink_url, tmp_path, series_calls):
    """A budget of about three days' series: the newest three are held (a day's blocks together, or not at all), a
    new day pushes the oldest out, a question reaching past them is answered from the files, and every answer equals
    the SQL over the files."""
    from pypi_pulse.sink.read_pool import ReadPool

    rng = random.Random(11)
    projects = [f"proj-{k:02d}" for k in range(30)]
    history = tmp_path / "history"
    with open_sink(sink_url, history=history) as db:
        for i, day in enumerate(DAYS[:6]):
            if i < 3:  # a day file each
                rows = [(d, p, dim, cat, n) for (d, p, dim, cat), n in counts_of(rng, day, projects).items()]
                db.backfill_day(day, [r[1:] for r in rows], "test")
            else:  # three blocks each
                for minute in range(3):
                    db.write_buckets([block(i, minute, counts_of(rng, day, projects))])
    sizer = ReadPool(sink_url, history=history, history_series_bytes=2**30)
    try:
        whole = sizer.history_reader()
        assert queries.compare(sizer.lease(), ["proj-00"], DAYS[0], DAYS[5])["proj-00"]
        day_bytes = {d: sum(n for v, n in whole.series._sizes.items() if v[0] == d) for d in DAYS[:6]}
        names = whole.series.names_bytes  # the same 30 projects every day
    finally:
        sizer.close()
    budget = names + sum(day_bytes[d] for d in DAYS[3:6]) + min(day_bytes.values()) // 2
    pool = ReadPool(sink_url, history=history, history_series_bytes=budget)
    try:
        db = pool.lease()
        reader = pool.history_reader()
        assert_same(db, projects)
        assert held_days(reader) == DAYS[3:6] and reader.series.held_bytes + names <= budget
        assert True in series_calls and False in series_calls  # some questions held, some asked the files
        answered = len(series_calls)
        queries.compare(db, ["proj-00"], DAYS[4], DAYS[5])
        assert series_calls[answered:] == [True]
        queries.compare(db, ["proj-00"], DAYS[0], DAYS[1])  # older than the budget holds: read, not held
        assert series_calls[answered + 1 :] == [False] and held_days(reader) == DAYS[3:6]
        with open_sink(sink_url, history=history) as writer:  # a new day: the newest three are held again
            for minute in range(3):
                writer.write_buckets([block(6, minute, counts_of(rng, DAYS[6], projects))])
        assert_same(db, projects)
        assert held_days(reader)[-1] == DAYS[6] and DAYS[3] not in held_days(reader)
        assert reader.series.held_bytes + reader.series.names_bytes <= budget
    finally:
        pool.close()


def test_a_budget_of_zero_holds_no_series_and_answers_from_the_files(sink_url, tmp_path):
    from pypi_pulse.sink.read_pool import ReadPool

    rng = random.Random(12)
    projects = [f"proj-{k:02d}" for k in range(10)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        for i, day in enumerate(DAYS[:3]):
            db.write_buckets([block(i, 0, counts_of(rng, day, projects))])
    pool = ReadPool(sink_url, history=tmp_path / "history", history_series_bytes=0)
    try:
        assert_same(pool.lease(), projects)
        series = pool.history_reader().series
        assert series._sizes == {} and series.held_bytes == 0  # no file was read into series
        assert held_days(pool.history_reader()) == []
    finally:
        pool.close()


def test_a_workers_dashboard_and_api_share_one_history_reader_and_live_does_not_wait_for_it(sink_url, tmp_path):
    """One copy of the series per server worker: the dashboard's sink and the API's leased ones read the history
    through the pool's reader, which outlives them; the Live feed's sink reads it through a reader of its own, so a
    history question holding the shared reader does not hold up the Live refresh."""
    import threading

    from pypi_pulse.sink.read_pool import ReadPool

    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.backfill_day(DAYS[0], [("a", "overall", None, 3), ("a", "with_mirrors", None, 4)], "test")
    pool = ReadPool(sink_url, history=tmp_path / "history")
    try:
        dashboard, api, live = pool.opener(sink_url), pool.lease(), pool.live_opener(sink_url)
        shared = pool.history_reader()
        assert dashboard._history_reader is api._history_reader is shared
        assert live._history_reader is not shared and live._history_reader.series.budget == 0
        assert queries.compare(dashboard, ["a"], DAYS[0], DAYS[0]) == {"a": [(DAYS[0], 3)]}
        dashboard.close()  # a dashboard reconnect: the pool's reader stays open
        assert queries.compare(api, ["a"], DAYS[0], DAYS[0], "with_mirrors") == {"a": [(DAYS[0], 4)]}
        answered = threading.Event()
        with shared.lock:  # a history question in progress on the shared reader
            worker = threading.Thread(target=lambda: (live.history_covered(DAYS[0]), answered.set()), daemon=True)
            worker.start()
            assert answered.wait(30), "the Live feed's history read waited for the shared reader"
        live.close()
    finally:
        pool.close()


def test_a_missing_sqlite_sink_is_the_one_line_error_through_the_pools_openers(tmp_path):
    from pypi_pulse.errors import UserError
    from pypi_pulse.sink.read_pool import ReadPool

    url = f"sqlite:///{tmp_path / 'missing.db'}"
    pool = ReadPool(url, history=tmp_path / "history")
    try:
        for opener in (pool.opener, pool.live_opener):
            with pytest.raises(UserError, match="no sink at"):
                opener(url, readonly=True)
    finally:
        pool.close()
