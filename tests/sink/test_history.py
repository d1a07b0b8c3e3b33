"""The rollup history's files (sink/history.py) and their reader (sink/history_reader.py): the documented schema,
read as it is by DuckDB and by pyarrow; compaction and folding with figures summed here by hand; retention by whole
days; a block sealed again replacing its own file; and readers that never count a day's blocks beside its day
file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.history import DAY_FILE, SCHEMA, TOTALS_KEY, History
from pypi_pulse.sink.history_reader import HistoryReader
from pypi_pulse.sink.model import RollupBucket

D0 = 1_795_824_000  # 2026-11-28T00:00:00Z
DAY = "2026-11-28"


def rows(*items: tuple) -> pa.Table:
    """(project, dimension, category, downloads) tuples as the columns a writer hands over."""
    cols = list(zip(*items)) if items else [[], [], [], []]
    return pa.table(
        {
            "project": pa.array(cols[0], pa.string()),
            "dimension": pa.array(cols[1], pa.string()),
            "category": pa.array(cols[2], pa.string()),
            "downloads": pa.array(cols[3], pa.int64()),
        }
    )


BLOCKS = [  # three ten-minute blocks of one day
    rows(("numpy", "overall", None, 5), ("numpy", "country", "US", 4), ("numpy", "country", "DE", 1)),
    rows(("attrs", "overall", None, 2), ("numpy", "overall", None, 3), ("numpy", "country", "US", 3)),
    rows(("numpy", "country", "DE", 6), ("numpy", "overall", None, 6), ("attrs", "country", None, 2)),
]


@pytest.fixture
def history(tmp_path) -> History:
    h = History(tmp_path / "history")
    for i, block in enumerate(BLOCKS):
        assert h.write_block(D0 + 600 * i, 600, block)
    return h


def _block_names() -> list[str]:
    return [f"block-{D0 + 600 * i}-600.parquet" for i in range(3)]


def test_the_files_have_the_documented_schema_for_duckdb_and_pyarrow(history):
    glob = f"{history.root}/day=*/*.parquet"
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{glob}')").fetchall()  # as anyone would type it
    assert [(name, kind) for name, kind, *_ in described] == [
        ("day", "DATE"),
        ("project", "VARCHAR"),
        ("dimension", "VARCHAR"),
        ("category", "VARCHAR"),
        ("downloads", "BIGINT"),
    ]
    summed = (
        duckdb.read_parquet(glob)
        .query(
            "files",
            "SELECT day, project, dimension, category, SUM(downloads) FROM files GROUP BY ALL "
            "ORDER BY project, dimension, category NULLS FIRST",
        )
        .fetchall()
    )
    day = dt.date(2026, 11, 28)
    assert summed == [
        (day, "attrs", "country", None, 2),
        (day, "attrs", "overall", None, 2),
        (day, "numpy", "country", "DE", 7),
        (day, "numpy", "country", "US", 7),
        (day, "numpy", "overall", None, 14),
    ]
    dataset = ds.dataset(history.root, format="parquet", partitioning=None)
    assert dataset.schema.remove_metadata() == SCHEMA.remove_metadata()
    assert sorted(f.rsplit("/", 1)[1] for f in dataset.files) == _block_names()
    table = dataset.to_table()
    assert table.num_rows == 9 and pa.compute.sum(table["downloads"]).as_py() == 32
    footer = pq.read_metadata(history.path(DAY, _block_names()[1])).metadata
    assert json.loads(footer[TOTALS_KEY]) == [["country", "US", 3], ["overall", None, 5]]  # summed over projects


def test_compaction_sums_the_blocks_into_one_sorted_day_file_and_removes_them(history):
    assert history.compact(DAY) is True
    assert history.day_files(DAY).files == [DAY_FILE]
    assert sorted(p.name for p in (Path(history.root) / f"day={DAY}").iterdir()) == [DAY_FILE]
    day = history.read(DAY, DAY_FILE)
    assert day.to_pylist() == [  # summed by hand from BLOCKS, sorted by project, dimension, category
        {"day": dt.date(2026, 11, 28), "project": "attrs", "dimension": "country", "category": None, "downloads": 2},
        {"day": dt.date(2026, 11, 28), "project": "attrs", "dimension": "overall", "category": None, "downloads": 2},
        {"day": dt.date(2026, 11, 28), "project": "numpy", "dimension": "country", "category": "DE", "downloads": 7},
        {"day": dt.date(2026, 11, 28), "project": "numpy", "dimension": "country", "category": "US", "downloads": 7},
        {"day": dt.date(2026, 11, 28), "project": "numpy", "dimension": "overall", "category": None, "downloads": 14},
    ]
    assert history.totals(DAY, DAY_FILE) == [
        ["country", None, 2],
        ["country", "DE", 7],
        ["country", "US", 7],
        [
            "overall",
            None,
            16,
        ],
    ]
    assert history.compact(DAY) is False  # idempotent


def test_folding_keeps_one_other_row_per_folded_dimension_and_the_totals(tmp_path):
    h = History(tmp_path / "history")
    h.write_block(
        D0,
        600,
        rows(
            ("big", "with_mirrors", None, 500),
            ("big", "country", "US", 400),
            ("big", "country", "DE", 100),
            ("small", "with_mirrors", None, 9),
            ("small", "overall", None, 8),
            ("small", "python_minor", "3.12", 8),
            ("small", "country", "US", 5),
            ("small", "country", "FR", 3),
            ("small", "version", "1.0", 6),
            ("small", "version", "2.0", 2),
        ),
    )
    h.write_block(D0 + 600, 600, rows(("small", "country", "JP", 1), ("small", "with_mirrors", None, 1)))
    totals = [["country", "DE", 100], ["country", "FR", 3], ["country", "JP", 1], ["country", "US", 405]]
    totals += [["overall", None, 8], ["python_minor", "3.12", 8], ["version", "1.0", 6], ["version", "2.0", 2]]
    totals += [["with_mirrors", None, 510]]
    assert h.compact(DAY, min_daily_downloads=100) is True
    got = {(r["project"], r["dimension"], r["category"]): r["downloads"] for r in h.read(DAY, DAY_FILE).to_pylist()}
    assert got == {
        ("big", "with_mirrors", None): 500,
        ("big", "country", "US"): 400,
        ("big", "country", "DE"): 100,
        ("small", "with_mirrors", None): 10,
        ("small", "overall", None): 8,
        ("small", "python_minor", "3.12"): 8,  # a pypistats dimension: exact for everyone
        ("small", "country", "other"): 9,  # US 5 + FR 3 + JP 1
        ("small", "version", "other"): 8,  # 1.0: 6 + 2.0: 2
    }
    assert h.totals(DAY, DAY_FILE) == totals  # the all-project totals, taken before folding
    reader = HistoryReader(h)
    assert reader.query("SELECT day, min_daily_downloads FROM compacted_days") == [(DAY, 100)]
    assert reader.query("SELECT dimension, category, downloads FROM daily_totals ORDER BY 1, 2") == [
        (d, c or "", n) for d, c, n in totals
    ]


def test_retention_drops_whole_days_and_leaves_the_others(tmp_path):
    h = History(tmp_path / "history")
    for i in range(4):
        h.write_block(D0 + 86400 * i, 600, rows(("numpy", "overall", None, 1 + i)))
    h.compact("2026-11-29")
    assert h.drop_through("2026-11-29") == 2
    assert h.days() == ["2026-11-30", "2026-12-01"]
    assert sorted(p.name for p in Path(h.root).iterdir()) == ["day=2026-11-30", "day=2026-12-01"]
    assert HistoryReader(h).query("SELECT day, SUM(downloads) FROM daily GROUP BY day ORDER BY day") == [
        ("2026-11-30", 3),
        ("2026-12-01", 4),
    ]


def test_a_block_written_again_replaces_its_own_file(history):
    reader = HistoryReader(history)
    before = reader.query("SELECT project, dimension, category, downloads FROM daily ORDER BY 1, 2, 3")
    assert history.write_block(D0 + 600, 600, BLOCKS[1])  # sealed again after a restart
    assert sorted(history.day_files(DAY).blocks) == _block_names()
    assert reader.query("SELECT project, dimension, category, downloads FROM daily ORDER BY 1, 2, 3") == before
    assert reader.query("SELECT SUM(downloads) FROM daily_totals") == [(32,)]


def test_readers_ignore_the_blocks_of_a_day_that_has_its_day_file(history):
    """A crash between the day file's rename and the deletion of the blocks leaves both on disk."""
    saved = {name: (Path(history.root) / f"day={DAY}" / name).read_bytes() for name in _block_names()}
    history.compact(DAY)
    for name, data in saved.items():  # the blocks, as the crash left them
        (Path(history.root) / f"day={DAY}" / name).write_bytes(data)
    assert sorted(history.day_files(DAY).blocks) == _block_names()
    reader = HistoryReader(history)
    assert reader.query("SELECT SUM(downloads) FROM daily") == [(32,)]
    assert reader.query("SELECT SUM(downloads) FROM daily_totals") == [(32,)]
    assert reader.query("SELECT downloads FROM daily WHERE project = 'numpy' AND dimension = 'overall'") == [(14,)]
    assert reader.covered(DAY) == [(D0, D0 + 86400)]
    assert history.compact(DAY) is False and history.day_files(DAY).blocks == {}  # the next compaction tidies up
    assert history.write_block(D0 + 1800, 600, BLOCKS[0]) is False  # and no block is added to a complete day


def test_one_projects_rows_over_a_period_with_a_missing_day(tmp_path):
    days = {"2026-11-01": 1, "2026-11-02": 2, "2026-11-04": 4}  # 2026-11-03: nothing stored
    with open_sink(f"sqlite:///{tmp_path / 'pulse.db'}", history=tmp_path / "history") as sink:
        assert sink.project_days("2026-11-01", "2026-11-30") == ("day IN (NULL)", ())  # nothing stored yet
        for day, k in days.items():
            start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())
            counts = {
                (day, p, "python_minor", c): 10 * k + j for j, p in enumerate(["numpy", "pip"]) for c in (None, "3.12")
            }
            sink.write_buckets(
                [RollupBucket(start, counts), RollupBucket(start + 60, {(day, "pip", "python_minor", "3.12"): 1})]
            )
        assert sink.daily("pip", "python_minor", "2026-10-01", "2026-12-31") == [
            ("2026-11-01", "pip", None, 11),
            ("2026-11-01", "pip", "3.12", 12),
            ("2026-11-02", "pip", None, 21),
            ("2026-11-02", "pip", "3.12", 22),
            ("2026-11-04", "pip", None, 41),
            ("2026-11-04", "pip", "3.12", 42),
        ]
        sql, params = sink.project_days("2026-10-30", "2026-11-30")
        assert params == ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04")  # clamped to the stored days
        assert sink.history_query(
            f"SELECT day, SUM(downloads) FROM daily WHERE project = ? AND {sql} GROUP BY day ORDER BY day",
            ("numpy", *params),
        ) == [("2026-11-01", 20), ("2026-11-02", 40), ("2026-11-04", 80)]
