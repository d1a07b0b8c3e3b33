"""Turning a sealed bucket's counts into daily rows, identically for every sink backend.

Backfill and stream never double count. A backfill writes a whole UTC day at once: in one transaction it deletes
whatever the stream had stored for that day, inserts the aggregates and records the day in `backfilled_days`.
From then on the sink's write path drops the stream's counts for that day (`daily_rows(..., skip_days=...)`,
with the days looked up by `BACKFILLED_AMONG` in the same transaction as the insert). So a backfilled day holds
exactly the backfill's figures, whatever the order in which backfill and stream ran; `--force` re-does a day.
Both backends run the portable statements below (`?` placeholders) so they behave identically.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from operator import itemgetter
from typing import Optional

from pypi_pulse.names import normalize
from pypi_pulse.rules import FOLDED
from pypi_pulse.sink.model import RollupBucket
from pypi_pulse.sink.schema import to_db_category


def partly_applied(bucket: RollupBucket, applied: int) -> RuntimeError:
    """A bucket some of whose minutes were applied by another bucket: applying it would count them twice, and
    leaving it out would lose the rest. The dataflow never produces one (its blocks are aligned and whole)."""
    return RuntimeError(
        f"rollup bucket {bucket.bucket} ({bucket.span} s) overlaps {applied} minute(s) already applied "
        "by differently aligned buckets: refusing to count them twice"
    )


def daily_rows(
    buckets: Iterable[RollupBucket], skip_days: frozenset | set = frozenset()
) -> tuple[list[tuple], list[tuple]]:
    """(day, project, dimension, category, n) rows and (day, dimension, category, n) all-project totals.

    Counts of `skip_days` (days a backfill owns) are left out.
    """
    per_project: dict[tuple, int] = defaultdict(int)
    totals: dict[tuple, int] = defaultdict(int)
    for b in buckets:
        for (day, project, dim, cat), n in b.counts.items():
            if day in skip_days:
                continue
            c = to_db_category(cat)
            per_project[(day, project, dim, c)] += n
            totals[(day, dim, c)] += n
    return [(*k, n) for k, n in per_project.items()], [(*k, n) for k, n in totals.items()]


def bucket_days(buckets: Iterable[RollupBucket]) -> list[str]:
    """The distinct days a list of buckets touches (a bucket touches one day); C-level, a block has ~10^5 keys."""
    return sorted(set().union(*(getattr(b.counts, "days", None) or map(_DAY, b.counts) for b in buckets)))


_DAY = itemgetter(0)


def backfilled_among(days: list[str]) -> tuple[str, tuple]:
    """(sql, params) selecting which of `days` a backfill owns; run it inside the write transaction."""
    marks = ", ".join("?" for _ in days) or "NULL"
    return f"SELECT day FROM backfilled_days WHERE day IN ({marks})", tuple(days)


INSERT_DAILY = (
    "INSERT INTO daily (day, project, dimension, category, downloads) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (day, project, dimension, category) DO UPDATE SET downloads = daily.downloads + excluded.downloads"
)
INSERT_TOTALS = (
    "INSERT INTO daily_totals (day, dimension, category, downloads) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (day, dimension, category) DO UPDATE SET downloads = daily_totals.downloads + excluded.downloads"
)


def backfill_statements(
    day: str, rows: Iterable[tuple[Optional[str], str, Optional[str], int]], source: str, now: Optional[float] = None
) -> list[tuple[str, list[tuple]]]:
    """The statements that make `day` hold exactly `rows`, as (sql, [params, ...]) to run in ONE transaction.

    `rows` are (project, dimension, category, downloads); names are normalised and duplicates summed, so a source
    may yield the same key more than once. A row may carry a fifth field, whether it counts in the all-project
    totals: a synthetic history writes the detail it folds (as `compact_day_statements` folds a streamed day) with
    project None, counted in the totals only, and the `other` rows that replace it in `daily` with False.
    """
    per_project: dict[tuple, int] = defaultdict(int)
    totals: dict[tuple, int] = defaultdict(int)
    for row in rows:
        project, dim, cat, n = row[:4]
        if not n:
            continue
        c = to_db_category(cat)
        if project is not None:
            per_project[(day, normalize(project), dim, c)] += int(n)
        if len(row) < 5 or row[4]:
            totals[(day, dim, c)] += int(n)
    return [
        ("DELETE FROM daily WHERE day = ?", [(day,)]),
        ("DELETE FROM daily_totals WHERE day = ?", [(day,)]),
        # in key order: the B-trees are filled sequentially, measurably faster on a large table
        (INSERT_DAILY, [(*k, per_project[k]) for k in sorted(per_project)]),
        (INSERT_TOTALS, [(*k, totals[k]) for k in sorted(totals)]),
        (
            "INSERT INTO backfilled_days (day, source, rows_written, completed_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (day) DO UPDATE SET source = excluded.source, rows_written = excluded.rows_written, "
            "completed_at = excluded.completed_at",
            [(day, source, len(per_project), now if now is not None else time.time())],
        ),
    ]


def retention_anchors(now: Optional[float] = None) -> tuple[int, str]:
    """The newest window start and day that retention may count back from: the newest data, but never beyond the
    wall clock (plus the accepted skew). The dataflow dead-letters such events; a sink written by a version that
    did not (one window stamped 9999-12-31) must not make retention delete every real row."""
    from pypi_pulse.bounds import latest_second

    latest = latest_second(time.time() if now is None else now)
    return latest, time.strftime("%Y-%m-%d", time.gmtime(latest))


def prune_backfilled_statement(cutoff_day: str) -> tuple[str, tuple]:
    """Forget backfill marks of pruned days together with their rollups."""
    return "DELETE FROM backfilled_days WHERE day <= ?", (cutoff_day,)


def prune_buckets_statement(cutoff_day: str) -> tuple[str, tuple]:
    """Forget the applied-bucket ids of pruned days (one per minute: 1,440 rows a day would otherwise pile up)."""
    import datetime as _dt

    end = _dt.datetime.fromisoformat(cutoff_day).replace(tzinfo=_dt.UTC) + _dt.timedelta(days=1)
    return "DELETE FROM rollup_buckets WHERE bucket < ?", (int(end.timestamp()),)


# ---- bounded storage: folding the long tail's fine detail --------------------------------------------------------
# At PyPI's real mix (~400,000 projects a day, a heavy tail) the fine breakdowns (country, installer, cpu, file type,
# version, ci) of every project would cost tens of millions of rows a day. Once a day is complete, projects below
# `min_daily_downloads` (with mirrors) keep only one `other` row per fine dimension; the pypistats dimensions
# (overall, with_mirrors, python_major, python_minor, system) and the all-project totals stay exact for everyone.
FOLDED_DIMENSIONS = FOLDED
FOLDED_CATEGORY = "other"
_IN_FOLDED = "(" + ", ".join(f"'{d}'" for d in FOLDED_DIMENSIONS) + ")"

DAYS_TO_COMPACT = (
    "SELECT DISTINCT day FROM daily_totals WHERE day < (SELECT MAX(day) FROM daily_totals) "
    "AND day NOT IN (SELECT day FROM compacted_days) ORDER BY day"
)


def compact_day_statements(day: str, min_daily_downloads: int, now: float) -> list[tuple[str, tuple]]:
    small = "SELECT project FROM daily WHERE day = ? AND dimension = 'with_mirrors' AND downloads < ?"
    return [
        (
            "INSERT INTO daily (day, project, dimension, category, downloads) "
            f"SELECT day, project, dimension, '{FOLDED_CATEGORY}', SUM(downloads) FROM daily "
            f"WHERE day = ? AND dimension IN {_IN_FOLDED} AND category <> '{FOLDED_CATEGORY}' AND project IN ({small}) "
            "GROUP BY day, project, dimension "
            "ON CONFLICT (day, project, dimension, category) DO UPDATE SET downloads = daily.downloads + excluded.downloads",
            (day, day, min_daily_downloads),
        ),
        (
            f"DELETE FROM daily WHERE day = ? AND dimension IN {_IN_FOLDED} AND category <> '{FOLDED_CATEGORY}' "
            f"AND project IN ({small})",
            (day, day, min_daily_downloads),
        ),
        (
            "INSERT INTO compacted_days (day, min_daily_downloads, compacted_at) VALUES (?, ?, ?) "
            "ON CONFLICT (day) DO NOTHING",
            (day, min_daily_downloads, now),
        ),
    ]
