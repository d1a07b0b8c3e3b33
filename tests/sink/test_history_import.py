"""`pypi-pulse history import`: a sink made before the Parquet history (schema version 9, rollups in its tables)
keeps every rollup once opened by the current code (migration 10) and imported: the day files hold exactly the
rows, totals, sources and fold thresholds that were inserted, read back with DuckDB and pyarrow, not with the
sink's own reader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from pulse_testing import pulse_command

from pypi_pulse import command_lines
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.legacy_import import import_legacy
from pypi_pulse.sink.schema import MIGRATIONS, migration_script

LEGACY_VERSION = 9  # the last schema with the rollups in the database

# day -> [(project, dimension, category ('' is NULL, as the tables stored it), downloads)]
DAILY = {
    "2026-03-01": [
        ("numpy", "overall", "", 120),
        ("numpy", "with_mirrors", "", 150),
        ("numpy", "country", "US", 70),
        ("numpy", "country", "DE", 50),
        ("numpy", "python_minor", "3.12", 100),
        ("numpy", "python_minor", "", 20),
        ("tiny", "overall", "", 3),
        ("tiny", "with_mirrors", "", 3),
        ("tiny", "country", "other", 3),
    ],
    "2026-03-02": [
        ("numpy", "overall", "", 90),
        ("numpy", "with_mirrors", "", 95),
        ("requests", "overall", "", 40),
        ("requests", "installer", "pip", 40),
    ],
    "2026-03-03": [("flask", "overall", "", 7), ("flask", "with_mirrors", "", 8)],
}
# all-project totals: more than the sum of the rows where the detail was folded or the long tail has no rows
TOTALS = {
    "2026-03-01": [
        ("overall", "", 1000),
        ("with_mirrors", "", 1200),
        ("country", "US", 600),
        ("country", "DE", 400),
        ("python_minor", "3.12", 900),
        ("python_minor", "", 100),
    ],
    "2026-03-02": [("overall", "", 130), ("with_mirrors", "", 135), ("installer", "pip", 40)],
    "2026-03-03": [("overall", "", 7), ("with_mirrors", "", 8)],
}
BACKFILLED = {"2026-03-02": "bigquery", "2026-03-04": "synthetic"}  # 03-04: a backfilled day with no downloads
COMPACTED = {"2026-03-01": 10}


def legacy_sink(url: str, with_rollups: bool = True) -> None:
    """A sink as the code before the Parquet history left it: migrations 1-9 and rollups in its tables."""
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"
    statements = [migration_script(m, backend) for m in MIGRATIONS[:LEGACY_VERSION]]
    rollups = (
        [("INSERT INTO daily VALUES (?, ?, ?, ?, ?)", (d, *r)) for d, rows in DAILY.items() for r in rows]
        + [("INSERT INTO daily_totals VALUES (?, ?, ?, ?)", (d, *t)) for d, ts in TOTALS.items() for t in ts]
        + [("INSERT INTO backfilled_days VALUES (?, ?, 0, 0)", (d, s)) for d, s in BACKFILLED.items()]
        + [("INSERT INTO compacted_days VALUES (?, ?, 0)", (d, n)) for d, n in COMPACTED.items()]
    )
    inserts = (rollups if with_rollups else []) + (
        [("INSERT INTO schema_version VALUES (?)", (v,)) for v in range(1, LEGACY_VERSION + 1)]
    )
    if backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for script in statements:
            db.executescript(script)
        for sql, params in inserts:
            db.execute(sql, params)
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for script in filter(None, statements):
                conn.execute(script)
            for sql, params in inserts:
                conn.execute(sql.replace("?", "%s"), params)


def history_rows(history: Path) -> dict[str, list[tuple]]:
    """Every day's rows as DuckDB reads the files (the day file alone where it exists), '' for NULL."""
    out: dict[str, list[tuple]] = {}
    rows = duckdb.sql(
        f"SELECT strftime(day, '%Y-%m-%d'), project, dimension, coalesce(category, ''), downloads "
        f"FROM read_parquet('{history}/day=*/day.parquet') ORDER BY ALL"
    ).fetchall()
    for day, *row in rows:
        out.setdefault(day, []).append(tuple(row))
    return out


def footers(history: Path) -> dict[str, dict[bytes, bytes]]:
    return {p.parent.name.removeprefix("day="): pq.read_metadata(p).metadata for p in history.glob("day=*/day.parquet")}


def expected_totals(day: str) -> list[list]:
    return sorted(([d, c or None, n] for d, c, n in TOTALS.get(day, [])), key=lambda t: (t[0], t[1] or ""))


def check_imported(history: Path) -> None:
    days = sorted({*DAILY, *TOTALS, *BACKFILLED})
    assert not list(history.glob("day=*/block-*")), "an import writes day files only"
    assert history_rows(history) == {d: sorted(DAILY[d]) for d in DAILY}
    meta = footers(history)
    assert sorted(meta) == days
    for day in days:
        assert json.loads(meta[day][b"pypi_pulse.totals"]) == expected_totals(day), day
        assert meta[day][b"pypi_pulse.source"].decode() == BACKFILLED.get(day, "stream"), day
        assert int(meta[day][b"pypi_pulse.folded_below"]) == COMPACTED.get(day, 0), day


def test_import_converts_every_legacy_day_into_its_day_file(sink_url, tmp_path):
    legacy_sink(sink_url)
    history = tmp_path / "history"
    with open_sink(sink_url, history=history) as sink:  # migration 10 renames the tables to legacy_*
        assert sink.history.days() == [], "the legacy rollups are no history until imported"
        summary = import_legacy(sink)
        assert (summary.days, summary.rows) == (4, sum(len(r) for r in DAILY.values()))
        check_imported(history)
        # the sink's own reader agrees with DuckDB over the files
        assert sink.history_query("SELECT day, source FROM backfilled_days ORDER BY day") == sorted(BACKFILLED.items())
        assert sink.history_query("SELECT day, min_daily_downloads FROM compacted_days") == list(COMPACTED.items())
        first = {p: p.read_bytes() for p in history.glob("day=*/day.parquet")}
        again = import_legacy(sink)  # idempotent: the same days again, the same rows in them
        assert (again.days, again.rows) == (summary.days, summary.rows)
        check_imported(history)
        assert {p: pq.read_table(p) for p in first} == {p: pq.read_table(p) for p in history.glob("day=*/day.parquet")}


def test_history_import_command_reports_days_and_rows(sink_url, tmp_path):
    legacy_sink(sink_url)
    history = tmp_path / "history"
    args = [pulse_command(), "history", "import", "--sink", sink_url, "--history", str(history), "--no-progress"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = sum(len(r) for r in DAILY.values())
    assert done.stdout.strip() == f"history import: 4 days, {rows} rows into {history}"
    check_imported(history)


@pytest.mark.parametrize("legacy", [False, True], ids=["new sink", "version 9 sink without rollups"])
def test_history_import_says_when_there_is_nothing_to_import(tmp_path, legacy):
    url = f"sqlite:///{tmp_path / 'pulse.db'}"
    if legacy:
        legacy_sink(url, with_rollups=False)
    else:
        open_sink(url, history=tmp_path / "history").close()
    args = command_lines.cli("history", "import", "--sink", url, "--history", str(tmp_path))
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"history import: nothing to import (no legacy rollups in {url})"
    assert not list(tmp_path.glob("day=*"))
