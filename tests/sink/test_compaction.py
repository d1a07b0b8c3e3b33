"""Bounded storage: once a day is complete, small projects' fine detail folds into one `other` row per dimension,
while pypistats dimensions and all-project totals stay exact."""

from __future__ import annotations

from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket

D1, D2 = 1795132800, 1795219200  # 2026-11-20, 2026-11-21 (UTC midnights)


def bucket(start: int, day: str, project: str, n: int, countries: dict[str, int]) -> RollupBucket:
    counts = {
        (day, project, "with_mirrors", None): n,
        (day, project, "overall", None): n,
        (day, project, "python_minor", "3.12"): n,
        (day, project, "version", "1.0"): n,
    }
    counts.update({(day, project, "country", cc): k for cc, k in countries.items()})
    return RollupBucket(start, counts)


def test_small_projects_fold_on_complete_days_only(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(
            [
                bucket(D1, "2026-11-20", "tiny", 7, {"US": 4, "DE": 2, "FR": 1}),
                bucket(D1 + 60, "2026-11-20", "big", 500, {"US": 400, "DE": 100}),
                bucket(D2, "2026-11-21", "tiny", 3, {"US": 2, "JP": 1}),
            ]
        )
        before_totals = db.history_query("SELECT dimension, category, downloads FROM daily_totals ORDER BY 1, 2, 3")
        assert db.compact(100) == 1  # only 2026-11-20: the newest day may still grow
        assert db.compact(100) == 0  # idempotent
        rows = lambda day, project, dim: sorted(  # noqa: E731
            (c, n) for d, p, c, n in db.daily(project, dim, day, day)
        )
        assert rows("2026-11-20", "tiny", "country") == [("other", 7)]
        assert rows("2026-11-20", "tiny", "version") == [("other", 7)]
        assert rows("2026-11-20", "tiny", "python_minor") == [("3.12", 7)]  # pypistats dimensions stay
        assert rows("2026-11-20", "big", "country") == [("DE", 100), ("US", 400)]
        assert rows("2026-11-21", "tiny", "country") == [("JP", 1), ("US", 2)]  # today is untouched
        assert (
            db.history_query("SELECT dimension, category, downloads FROM daily_totals ORDER BY 1, 2, 3")
            == before_totals
        )


def test_zero_threshold_keeps_every_row(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets(
            [bucket(D1, "2026-11-20", "tiny", 7, {"US": 7}), bucket(D2, "2026-11-21", "tiny", 1, {"US": 1})]
        )
        before = db.history_query("SELECT * FROM daily ORDER BY day, project, dimension, category")
        assert db.compact(0) == 1  # the complete day becomes its day file, with nothing folded
        assert db.compact(0) == 0
        assert db.history.day_files("2026-11-20").files == ["day.parquet"]
        assert [c for _, _, c, _ in db.daily("tiny", "country", "2026-11-20", "2026-11-20")] == ["US"]
        assert db.history_query("SELECT * FROM daily ORDER BY day, project, dimension, category") == before
        assert db.history_query("SELECT COUNT(*) FROM compacted_days") == [(0,)]  # no day's long tail folded
