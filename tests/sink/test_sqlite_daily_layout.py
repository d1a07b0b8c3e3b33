"""SQLite's `daily` is clustered by (day, project, dimension, category) without a rowid or a project index
(migration 7): a sink created before it keeps every row through the rebuild, and one project's reads seek its
days instead of scanning the period."""

from __future__ import annotations

import sqlite3

from pypi_pulse.sink import queries
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.schema import MIGRATIONS, migration_script

DAYS = ["2026-11-01", "2026-11-02", "2026-11-04"]  # a gap: a day without rollups is simply absent


def _rows() -> list[tuple]:
    rows = []
    for i, day in enumerate(DAYS):
        for j, project in enumerate(["numpy", "pip", "requests", "zope-interface"]):
            n = 10 * (i + 1) + j
            rows += [
                (day, project, "overall", "", n),
                (day, project, "with_mirrors", "", n + 1),
                (day, project, "country", "US", n - 3),
                (day, project, "country", "DE", 3),
                (day, project, "python_minor", "3.12", n - 1),
                (day, project, "python_minor", "", 1),
            ]
    return rows


def _sink_at_schema_6(path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, script in enumerate(MIGRATIONS[:6], start=1):
        db.executescript(migration_script(script, "sqlite"))
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    rows = _rows()
    db.executemany("INSERT INTO daily VALUES (?, ?, ?, ?, ?)", rows)
    totals: dict = {}
    for day, _p, dim, cat, n in rows:
        totals[(day, dim, cat)] = totals.get((day, dim, cat), 0) + n
    db.executemany("INSERT INTO daily_totals VALUES (?, ?, ?, ?)", [(*k, n) for k, n in totals.items()])
    db.close()


def _answers(sink) -> dict:
    return {
        "daily": sink.daily("pip", "python_minor", "2026-10-01", "2026-12-31"),
        "by_category": queries.daily_by_category(sink, "zope.interface", "country", "2026-11-02", "2026-11-30"),
        "one_category": queries.daily_by_category(
            sink, "numpy", "country", "2026-11-01", "2026-11-04", "DE", match_category=True
        ),
        "totals": queries.category_totals(sink, "requests", "country", "2026-11-01", "2026-11-03"),
        "compare": queries.compare(sink, ["numpy", "pip"], "2026-11-02", "2026-11-05"),
        "recent": queries.recent(sink, "numpy", today="2026-11-05"),
        "known": (queries.known_package(sink, "Zope_Interface"), queries.known_package(sink, "nope")),
        "names": queries.package_names(sink),
    }


def test_a_sink_from_before_the_clustered_layout_keeps_every_row_and_answer(tmp_path):
    path = tmp_path / "old.db"
    _sink_at_schema_6(path)
    url = f"sqlite:///{path}"
    with open_sink(url, readonly=True) as old:  # a reader never migrates
        before = _answers(old)
    assert before["daily"][:2] == [("2026-11-01", "pip", None, 1), ("2026-11-01", "pip", "3.12", 10)]
    assert before["compare"]["numpy"] == [("2026-11-02", 20), ("2026-11-04", 30)]
    assert before["recent"] == {"last_day": 30, "last_week": 60, "last_month": 60}
    assert before["known"] == ("zope-interface", None)

    with open_sink(url) as new:  # the writer migrates
        assert "WITHOUT ROWID" in new.query("SELECT sql FROM sqlite_master WHERE name = 'daily'")[0][0]
        assert {
            r[0]
            for r in new.query(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'daily' AND type = 'index' AND sql IS NOT NULL"
            )
        } == {"daily_country", "daily_projects"}
        assert sorted(new.query("SELECT * FROM daily")) == sorted(_rows())
        assert _answers(new) == before


def test_one_projects_reads_seek_the_key_day_by_day_instead_of_scanning(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with open_sink(url) as sink:
        days, params = sink.project_days("2026-11-01", "2026-11-30")
        assert params == ()  # nothing stored yet: no day can match
        sink._execute_many_in_transaction(
            [
                ("INSERT INTO daily VALUES (?, ?, ?, ?, ?)", _rows()),
                ("INSERT INTO daily_totals VALUES (?, ?, ?, ?)", [(d, "overall", "", 1) for d in DAYS]),
            ]
        )
        days, params = sink.project_days("2026-10-30", "2026-11-30")
        assert params == ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04")  # clamped to the stored days
        plan = " | ".join(
            r[-1]
            for r in sink.query(
                f"EXPLAIN QUERY PLAN SELECT day, category, downloads FROM daily WHERE project = ? AND dimension = ? "
                f"AND {days}",
                ("numpy", "overall", *params),
            )
        )
        assert "SEARCH daily USING PRIMARY KEY (day=? AND project=? AND dimension=?)" in plan, plan
