"""The sink contract, proved identically on SQLite and on a real PostgreSQL server (the `sink_url` fixture runs
each test once per backend): schema and migrations, idempotent window and rollup writes, retention, read-only
mode, counters, and the portable `query` used by the shared query layer. Rollups live in the sink's history
(Parquet files, sink/history.py; each test has its own) and are read with `history_query`."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date, timedelta

import psycopg
import pytest

from pypi_pulse.errors import UserError
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.history import ReadOnlyHistory
from pypi_pulse.sink.model import PipelineStats, RollupBucket, WindowRow
from pypi_pulse.sink.schema import MIGRATIONS

T0 = 1_795_824_000  # 2026-11-28T00:00:00Z
DAY0 = "2026-11-28"


def window(start: int, downloads: int, **countries: int) -> WindowRow:
    countries = countries or {"US": downloads}
    assert sum(countries.values()) == downloads
    return WindowRow(start, downloads, 2, countries, [("numpy", downloads - 1), ("requests", 1)])


def bucket(minute: int, counts: dict, day: int = 0) -> RollupBucket:
    """A one-minute bucket `minute` minutes into the `day`-th day after DAY0 (its counts are that day's)."""
    return RollupBucket(T0 + 86400 * day + 60 * minute, counts)


def test_schema_is_created_and_rerunning_migrations_is_a_no_op(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write([window(T0, 3)], None)
    for _ in range(2):  # a second and third start: migrations are already applied
        with open_sink(sink_url, history=tmp_path / "history") as db:
            assert db.query("SELECT COUNT(*), MIN(version), MAX(version) FROM schema_version") == [
                (len(MIGRATIONS), 1, len(MIGRATIONS))
            ]
            assert [w.downloads for w in db.windows(T0, T0 + 1)] == [3]
            for table in ("windows", "pipeline_stats", "legacy_daily", "legacy_daily_totals", "day_summaries"):
                assert db.query(f"SELECT COUNT(*) FROM {table}")[0][0] == (1 if table == "windows" else 0)
            for table in ("daily", "daily_totals", "backfilled_days", "compacted_days"):  # the history's
                assert db.history_query(f"SELECT COUNT(*) FROM {table}") == [(0,)]


def test_window_upsert_replaces_the_row_so_a_replay_never_double_counts(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write([window(T0, 5), window(T0 + 1, 2)], None)
        db.write([window(T0, 8, US=6, DE=2)], None)  # a late event updated the first window
        db.write([window(T0, 8, US=6, DE=2), window(T0 + 1, 2)], None)  # a replay after a restart
        rows = db.windows(T0, T0 + 2)
        assert [(w.start, w.downloads, w.countries) for w in rows] == [
            (T0, 8, {"US": 6, "DE": 2}),
            (T0 + 1, 2, {"US": 2}),
        ]
        assert db.query("SELECT COUNT(*), SUM(downloads) FROM windows") == [(2, 10)]
        # two versions of one window in a single write: the later one wins
        db.write([window(T0 + 2, 1), window(T0 + 2, 4)], None)
        assert [w.downloads for w in db.windows(T0 + 2, T0 + 3)] == [4]


def test_a_large_replayed_batch_of_windows_upserts_exactly(sink_url, tmp_path):
    """A replay at full speed hands the sink thousands of windows in one write (the bulk path)."""
    first = [window(T0 + i, 1 + i % 7) for i in range(500)]
    second = [window(T0 + i, 2 + i % 5, US=1, DE=1 + i % 5) for i in range(250, 750)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write(first, None)
        db.write(second + [window(T0 + 749, 3)], None)
        got = {w.start: w for w in db.windows(T0, T0 + 1000)}
        expected = {w.start: w for w in first} | {w.start: w for w in second} | {T0 + 749: window(T0 + 749, 3)}
        assert got == expected
        assert db.query("SELECT COUNT(*), SUM(downloads) FROM windows") == [
            (750, sum(w.downloads for w in expected.values()))
        ]


def test_windows_reads_are_half_open_oldest_first_and_round_trip_exactly(sink_url, tmp_path):
    rows = [WindowRow(T0 + i, 10 + i, 3, {"US": 5 + i, "ZZ": 5}, [("a", 4 + i), ("b", 3), ("c", 3)]) for i in range(6)]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write(list(reversed(rows)), None)
        assert db.windows(T0 + 1, T0 + 4) == rows[1:4]
        assert db.windows(T0 + 6, T0 + 10) == []
        assert db.latest_windows(2) == rows[4:]
        assert db.latest_windows(100) == rows
        assert db.latest_windows(1)[0].to_json() == {
            "start": "2026-11-28T00:00:05Z",
            "downloads": 15,
            "unique_packages": 3,
            "countries": {"US": 10, "ZZ": 5},
            "top": [
                {"project": "a", "downloads": 9},
                {"project": "b", "downloads": 3},
                {"project": "c", "downloads": 3},
            ],
        }


def test_a_rollup_bucket_applied_twice_counts_once(sink_url, tmp_path):
    first = bucket(0, {(DAY0, "numpy", "overall", None): 5, (DAY0, "numpy", "country", "US"): 5})
    second = bucket(1, {(DAY0, "numpy", "overall", None): 2, (DAY0, "numpy", "country", "DE"): 2})
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets([first])
        db.write_buckets([first])  # replayed after a restart
        db.write_buckets([first, second])  # replayed together with a new one: only the new one is applied
        db.write_buckets([second, second])  # the same bucket twice in one write
        assert db.daily("numpy", "overall", DAY0, DAY0) == [(DAY0, "numpy", None, 7)]
        assert db.daily("numpy", "country", DAY0, DAY0) == [(DAY0, "numpy", "DE", 2), (DAY0, "numpy", "US", 5)]
        assert db.daily(None, "overall", DAY0, DAY0) == [(DAY0, None, None, 7)]
        assert db.history_covered(DAY0) == [(T0, T0 + 60), (T0 + 60, T0 + 120)]  # one block file each
    with open_sink(sink_url, history=tmp_path / "history") as db:  # and after reopening
        db.write_buckets([first, second])
        assert db.daily(None, "overall", DAY0, DAY0) == [(DAY0, None, None, 7)]


def test_a_block_of_minutes_is_applied_whole_once_and_an_overlapping_one_is_refused(sink_url, tmp_path):
    counts = {(DAY0, "numpy", "overall", None): 10, (DAY0, "numpy", "country", "US"): 10}
    block = RollupBucket(T0, counts, span=600)
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets([block])
        db.write_buckets([block])  # replayed after a recovery
        db.write_buckets([RollupBucket(T0 + 60, counts)])  # one of its minutes, alone: already applied
        assert db.daily("numpy", "overall", DAY0, DAY0) == [(DAY0, "numpy", None, 10)]
        assert db.history_covered(DAY0) == [(T0, T0 + 600)]  # the block's ten minutes, once
        with pytest.raises(RuntimeError, match="overlaps 5 minute"):
            db.write_buckets([RollupBucket(T0 + 300, counts, span=600)])
        with pytest.raises(RuntimeError, match="overlaps"):  # two overlapping blocks in one write
            db.write_buckets([RollupBucket(T0 + 600, counts, span=600), RollupBucket(T0 + 900, counts, span=600)])
        assert db.daily("numpy", "overall", DAY0, DAY0) == [(DAY0, "numpy", None, 10)]  # nothing half-written
        assert db.history_covered(DAY0) == [(T0, T0 + 600)]
        db.write_buckets([RollupBucket(T0 + 600, counts, span=600)])
        assert db.daily(None, "country", DAY0, DAY0) == [(DAY0, None, "US", 20)]


def test_daily_totals_equal_the_sum_of_the_per_project_rows(sink_url, tmp_path):
    days = [DAY0, (date.fromisoformat(DAY0) + timedelta(days=1)).isoformat()]
    projects = [f"pkg-{i}" for i in range(150)]
    dims = {
        "python_minor": ["3.12", "3.11", None],
        "system": ["Linux", "Darwin", "Windows", "other", None],
        "ci": ["true", None],
        "overall": [None],
    }
    buckets = []
    for m in range(4):
        counts = {}
        for i, p in enumerate(projects):
            for dim, cats in dims.items():
                for j, cat in enumerate(cats):
                    counts[(days[m % 2], p, dim, cat)] = 1 + (i * 7 + j * 3 + m) % 11
        buckets.append(bucket(m, counts, day=m % 2))
    expected_project: Counter = Counter()
    expected_total: Counter = Counter()
    for b in buckets:
        for (day, p, dim, cat), n in b.counts.items():
            expected_project[(day, p, dim, cat)] += n
            expected_total[(day, dim, cat)] += n
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets[:3])
        db.write_buckets(buckets[1:])
        for dim in dims:
            got = {(d, c): n for d, _, c, n in db.daily(None, dim, days[0], days[1])}
            assert got == {(d, c): n for (d, dm, c), n in expected_total.items() if dm == dim}
            rows = db.daily("pkg-7", dim, days[0], days[1])
            assert {(d, c): n for d, _, c, n in rows} == {
                (d, c): n for (d, p, dm, c), n in expected_project.items() if p == "pkg-7" and dm == dim
            }
        # the two tables agree for every (day, dimension, category)
        mismatches = db.history_query(
            "SELECT t.day, t.dimension, t.category FROM daily_totals t "
            "JOIN (SELECT day, dimension, category, SUM(downloads) AS n FROM daily GROUP BY day, dimension, category) p "
            "ON p.day = t.day AND p.dimension = t.dimension AND p.category = t.category WHERE p.n <> t.downloads"
        )
        assert mismatches == []
        assert db.history_query("SELECT COUNT(*) FROM daily") == [(len(expected_project),)]
        assert db.history_query("SELECT SUM(downloads) FROM daily_totals") == [(sum(expected_total.values()),)]


def test_prune_keeps_windows_counted_back_from_the_newest_window_and_drops_old_daily_rows(sink_url, tmp_path):
    old = 1_600_000_000  # an export from 2020, replayed long after: its newest window anchors retention
    newest = old + 3 * 86400
    windows = [window(newest - s, 1) for s in (0, 1, 3600, 48 * 3600, 48 * 3600 + 1, 72 * 3600)]
    d_new = date(2026, 11, 28)
    day = lambda n: (d_new - timedelta(days=n)).isoformat()  # noqa: E731
    midnight = lambda n: T0 - 86400 * n  # noqa: E731 - T0 is d_new's midnight
    buckets = [
        RollupBucket(midnight(n), {(day(n), "numpy", "overall", None): 1, (day(n), "pip", "overall", None): 2})
        for n in (0, 1, 399, 400, 401, 700)
    ]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets)
        db.write(windows, None)
        removed = db.prune(window_retention_s=48 * 3600, rollup_retention_days=400)
        assert removed == {"windows": 2, "daily": 3}  # whole days of history: 400, 401 and 700 days back
        assert [w.start for w in db.latest_windows(100)] == [newest - 48 * 3600, newest - 3600, newest - 1, newest]
        kept = [d for d, *_ in db.daily("numpy", "overall", "2000-01-01", "2100-01-01")]
        assert kept == [day(399), day(1), day(0)]
        assert [d for d, *_ in db.daily(None, "overall", "2000-01-01", "2100-01-01")] == kept
        assert db.history.days() == kept  # the pruned days' directories are gone, their blocks with them
        assert db.history_covered(day(400)) == [] and db.history_covered(day(399)) == [
            (midnight(399), midnight(399) + 60)
        ]
        assert db.prune(48 * 3600, 400) == {"windows": 0, "daily": 0}


def test_prune_never_counts_back_from_a_window_or_day_beyond_the_wall_clock(sink_url, tmp_path):
    """A sink poisoned before events were bounded (one window stamped 9999-12-31, its day's rollups) keeps its
    real rows: retention counts back from the newest data no later than now."""
    far = 253_402_300_799  # 9999-12-31T23:59:59Z
    real = [window(T0 + s, 1) for s in range(3)]
    buckets = [
        RollupBucket(T0, {(DAY0, "numpy", "overall", None): 3}),
        RollupBucket(far - far % 86400, {("9999-12-31", "numpy", "overall", None): 1}),
    ]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets)
        db.write(real + [window(far, 1)], None)
        assert db.history.days() == [DAY0, "9999-12-31"]
        assert db.prune(window_retention_s=48 * 3600, rollup_retention_days=400) == {"windows": 0, "daily": 0}
        assert [w.start for w in db.latest_windows(100)] == [T0, T0 + 1, T0 + 2, far]
        assert [d for d, *_ in db.daily("numpy", "overall", "2000-01-01", "2100-01-01")] == [DAY0]
        assert db.history.days() == [DAY0, "9999-12-31"]


def test_prune_of_an_empty_sink_removes_nothing(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        assert db.prune(48 * 3600, 400) == {"windows": 0, "daily": 0}


READONLY_ERRORS = (sqlite3.OperationalError, psycopg.errors.ReadOnlySqlTransaction)


def test_readonly_mode_refuses_writes(sink_url, tmp_path):
    b = bucket(0, {(DAY0, "numpy", "overall", None): 5})
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets([b])
        db.write([window(T0, 5)], PipelineStats({"events": 5}, {0: 5}))
    with open_sink(sink_url, readonly=True, history=tmp_path / "history") as ro:
        with pytest.raises(READONLY_ERRORS):
            ro.write([window(T0, 9)], None)
        with pytest.raises(ReadOnlyHistory):  # the rollups go to the history, read-only with the sink
            ro.write_buckets([bucket(1, {(DAY0, "numpy", "overall", None): 5})])
        with pytest.raises(ReadOnlyHistory):
            ro.backfill_day(DAY0, [("numpy", "overall", None, 1)], "test")
        with pytest.raises(READONLY_ERRORS):
            ro.prune(0, 0)
        with pytest.raises(ReadOnlyHistory):
            ro.history.drop_through(DAY0)
        with pytest.raises(READONLY_ERRORS):
            ro.query("DELETE FROM windows")
        # reads work, and nothing changed
        assert [w.downloads for w in ro.latest_windows(10)] == [5]
        assert ro.daily("numpy", "overall", DAY0, DAY0) == [(DAY0, "numpy", None, 5)]
        assert ro.history_covered(DAY0) == [(T0, T0 + 60)]
        assert ro.stats().counters == {"events": 5}


def test_readonly_without_a_sink_is_a_user_error(sink_url, tmp_path):
    # the backend exists but nothing has created the schema yet (SQLite: no file; PostgreSQL: an empty schema)
    with pytest.raises(UserError, match="first"):
        open_sink(sink_url, readonly=True, history=tmp_path / "history")


def test_readonly_reader_sees_new_writes_without_reopening(sink_url, tmp_path):
    with (
        open_sink(sink_url, history=tmp_path / "history") as db,
        open_sink(sink_url, readonly=True, history=tmp_path / "history") as ro,
    ):
        db.write([window(T0, 1)], None)
        assert len(ro.latest_windows(10)) == 1
        db.write([window(T0 + 1, 1)], None)
        assert len(ro.latest_windows(10)) == 2


def test_stats_round_trip(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        assert db.stats() is None
        first = PipelineStats({"events": 10, "dead_letters": 1}, {0: 4, 3: 7}, 1_795_737_600.5, 1_795_737_601.25)
        db.write([], first)
        assert db.stats() == first
        second = PipelineStats({"events": 12, "dead_letters": 1, "late": 2}, {0: 6, 1: 1, 3: 7}, None, 1_795_737_700.0)
        db.write([window(T0, 2)], second)  # written in the same transaction as the windows it describes
        assert db.stats() == second
    with open_sink(sink_url, readonly=True, history=tmp_path / "history") as ro:
        got = ro.stats()
        assert got == second and all(isinstance(k, int) for k in got.offsets)


def test_query_takes_qmark_placeholders_and_returns_the_same_python_types(sink_url, tmp_path):
    """The same portable SQL on both backends' tables (`query`) and on the history's (`history_query`)."""
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets([bucket(0, {(DAY0, "it's-100%", "overall", None): 3, (DAY0, "numpy", "overall", None): 2})])
        db.write(
            [
                window(T0, 4, US=3, DE=1),
                window(T0 + 1, 6),
                WindowRow(T0 + 2, 1, 1, {"ZZ": 1}, [("it's-100%", 1)]),
            ],
            None,
        )
        # `?` inside a string literal or a quoted identifier is not a placeholder; `%` is literal everywhere
        rows = db.query(
            "SELECT COUNT(*), SUM(downloads), '?' AS \"q?\" FROM windows WHERE start >= ? AND start < ? "
            "AND downloads % 2 = 0",
            (T0, T0 + 10),
        )
        assert rows == [(2, 10, "?")]
        assert all(type(v) is int for v in rows[0][:2])
        assert db.query("SELECT start FROM windows WHERE CAST(top AS TEXT) LIKE '%\\%%' ESCAPE '\\'") == [(T0 + 2,)]
        assert db.query("SELECT start FROM windows WHERE start = ? -- a comment with a ? in it\n", (T0 + 2,)) == [
            (T0 + 2,)
        ]
        rows = db.history_query(
            "SELECT project, SUM(downloads) FROM daily WHERE day = ? AND project LIKE '%\\%%' ESCAPE '\\' "
            "GROUP BY project",
            (DAY0,),
        )
        assert rows == [("it's-100%", 3)]
        rows = db.history_query(
            "SELECT project FROM daily WHERE project = ? -- a comment with a ? in it\n", ("it's-100%",)
        )
        assert rows == [("it's-100%",)]
        assert db.history_query(
            "SELECT project, downloads FROM daily WHERE dimension = ? ORDER BY downloads DESC, project LIMIT ?",
            ("overall", 1),
        ) == [("it's-100%", 3)]
        assert db.query("SELECT start FROM windows WHERE start > ?", (T0 + 0.5,)) == [(T0 + 1,), (T0 + 2,)]


def test_a_backfilled_day_holds_exactly_the_backfill_whatever_the_stream_does(sink_url, tmp_path):
    day1 = (date.fromisoformat(DAY0) + timedelta(days=1)).isoformat()
    stream = [bucket(0, {(DAY0, "numpy", "overall", None): 5}), bucket(0, {(day1, "numpy", "overall", None): 4}, day=1)]
    rows = [
        ("NumPy", "overall", None, 100),
        ("numpy", "overall", None, 20),
        ("requests", "overall", None, 7),
        ("requests", "python_minor", None, 7),
    ]
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(stream)  # the stream got there first
        assert db.backfill_day(DAY0, rows, "test") == 3  # names normalised and duplicate keys summed
        assert db.daily(None, "overall", DAY0, day1) == [(DAY0, None, None, 127), (day1, None, None, 4)]
        assert db.daily("numpy", "overall", DAY0, DAY0) == [(DAY0, "numpy", None, 120)]
        later = [
            bucket(1, {(DAY0, "numpy", "overall", None): 9}),
            bucket(1, {(day1, "numpy", "overall", None): 1}, day=1),
        ]
        db.write_buckets(later)
        assert db.daily(None, "overall", DAY0, day1) == [(DAY0, None, None, 127), (day1, None, None, 5)]
        assert db.daily(None, "python_minor", DAY0, DAY0) == [(DAY0, None, None, 7)]
        assert db.backfill_day(DAY0, rows[2:], "again") == 2  # re-doing a day replaces it whole
        assert db.daily(None, "overall", DAY0, DAY0) == [(DAY0, None, None, 7)]
        assert db.history_query("SELECT day, source FROM backfilled_days") == [(DAY0, "again")]
        # retention drops whole days: DAY0, a day before the newest, with its two rows
        assert db.prune(48 * 3600, 1) == {"windows": 0, "daily": 1}
        assert db.history_query("SELECT COUNT(*) FROM backfilled_days") == [(0,)]
        assert db.daily(None, "overall", DAY0, day1) == [(day1, None, None, 5)]


def test_dataflow_workers_opening_a_new_sqlite_sink_at_once_all_get_it(tmp_path):
    import threading

    for attempt in range(10):
        url = f"sqlite:///{tmp_path}/s{attempt}.db"
        errors: list = []

        def open_and_close(url=url, errors=errors):
            try:
                open_sink(url).close()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        workers = [threading.Thread(target=open_and_close) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        with open_sink(url) as sink:
            assert sink.query("SELECT COUNT(*), MAX(version) FROM schema_version") == [
                (len(MIGRATIONS), len(MIGRATIONS))
            ]
