"""`pypi-pulse history import`: a sink's rollups from before the Parquet history, converted into day files.

Migration 10 (sink/schema.py) renamed the database's rollup tables to `legacy_daily`, `legacy_daily_totals`,
`legacy_backfilled_days` and `legacy_compacted_days`, so that nothing reads them as the history any more. Each day
they hold becomes one day file (sink/history.py `History.write_day`): its per-project rows as they were, its
all-project totals from `legacy_daily_totals` (exact even where the detail was folded), its source (the backfill's
tag, else the stream) and the threshold its long tail was folded below. Writing a day file replaces the day, so a
second import rewrites the same files; the legacy tables are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import pyarrow as pa

from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.history import ROWS, STREAM
from pypi_pulse.sink.schema import from_db_category

DAYS_SQL = (
    "SELECT day FROM legacy_daily_totals UNION SELECT day FROM legacy_daily "
    "UNION SELECT day FROM legacy_backfilled_days ORDER BY day"
)


@dataclass
class ImportSummary:
    days: int = 0
    rows: int = 0


def legacy_days(sink: Sink) -> list[str]:
    """The days the legacy tables hold anything for (rows, totals, or a backfill of nothing), oldest first."""
    return [day for (day,) in sink.query(DAYS_SQL)]


def legacy_day(sink: Sink, day: str) -> tuple[pa.Table, list[list], str, int]:
    """One legacy day as `History.write_day` takes it: (rows, totals, source, folded_below)."""
    rows = sink.query(
        "SELECT project, dimension, category, downloads FROM legacy_daily WHERE day = ? "
        "ORDER BY project, dimension, category",
        (day,),
    )
    table = pa.Table.from_arrays(
        [
            pa.array([r[0] for r in rows], pa.string()),
            pa.array([r[1] for r in rows], pa.string()),
            pa.array([from_db_category(r[2]) for r in rows], pa.string()),
            pa.array([int(r[3]) for r in rows], pa.int64()),
        ],
        schema=ROWS,
    )
    totals = sorted(
        (
            [d, from_db_category(c), int(n)]
            for d, c, n in sink.query(
                "SELECT dimension, category, downloads FROM legacy_daily_totals WHERE day = ?", (day,)
            )
        ),
        key=lambda t: (t[0], t[1] or ""),
    )
    source = sink.query("SELECT source FROM legacy_backfilled_days WHERE day = ?", (day,))
    folded = sink.query("SELECT min_daily_downloads FROM legacy_compacted_days WHERE day = ?", (day,))
    return table, totals, source[0][0] if source else STREAM, int(folded[0][0]) if folded else 0


def import_legacy(
    sink: Sink, days: Optional[list[str]] = None, on_day: Optional[Callable[[str, int], None]] = None
) -> ImportSummary:
    """Write each legacy day (all of them unless `days`) as its day file in `sink.history`; `on_day(day, rows)`
    hears each one written."""
    summary = ImportSummary()
    for day in legacy_days(sink) if days is None else days:
        rows, totals, source, folded_below = legacy_day(sink, day)
        sink.history.write_day(day, rows, totals, source, folded_below)
        summary.days += 1
        summary.rows += rows.num_rows
        if on_day is not None:
            on_day(day, rows.num_rows)
    return summary
