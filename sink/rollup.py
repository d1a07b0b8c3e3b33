"""Sealed rollup buckets and backfilled days as rows of the history (sink/history.py), identically for every
sink backend.

Backfill and stream never double count: a backfill writes a whole UTC day as its day file, which replaces whatever
the stream had written for the day; a block the stream seals later for that day is not written (the day file is
there). So a backfilled day holds exactly the backfill's figures, whatever the order in which backfill and stream
ran; `--force` re-does a day.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional

from pypi_pulse.names import normalize
from pypi_pulse.rules import FOLDED
from pypi_pulse.sink.model import RollupBucket

if TYPE_CHECKING:  # loaded by the history's writers only (sink/base.py says why)
    import pyarrow as pa

# ---- bounded storage: folding the long tail's fine detail --------------------------------------------------------
# At PyPI's real mix (~400,000 projects a day, a heavy tail) the fine breakdowns (country, installer, cpu, file type,
# version, ci) of every project would cost tens of millions of rows a day. Once a day is complete, projects below
# `min_daily_downloads` (with mirrors) keep only one `other` row per fine dimension; the pypistats dimensions
# (overall, with_mirrors, python_major, python_minor, system) and the all-project totals stay exact for everyone.
FOLDED_DIMENSIONS = FOLDED
FOLDED_CATEGORY = "other"


def partly_applied(bucket: RollupBucket, applied: int) -> RuntimeError:
    """A bucket some of whose minutes were applied by another bucket: applying it would count them twice, and
    leaving it out would lose the rest. The dataflow never produces one (its blocks are aligned and whole)."""
    return RuntimeError(
        f"rollup bucket {bucket.bucket} ({bucket.span} s) overlaps {applied} minute(s) already applied "
        "by differently aligned buckets: refusing to count them twice"
    )


def bucket_rows(bucket: RollupBucket) -> pa.Table:
    """The bucket's counts as (project, dimension, category, downloads) columns: a dataflow block builds its own
    in numpy (`BlockRows.arrow`); a bucket of a test or tool is a dict, its days all the bucket's."""
    from pypi_pulse.sink.history import ROWS

    counts = bucket.counts
    if hasattr(counts, "arrow"):
        return counts.arrow()
    import pyarrow as pa

    keys = list(counts)
    return pa.Table.from_arrays(
        [
            pa.array([k[1] for k in keys], pa.string()),
            pa.array([k[2] for k in keys], pa.string()),
            pa.array([k[3] for k in keys], pa.string()),
            pa.array([counts[k] for k in keys], pa.int64()),
        ],
        schema=ROWS,
    )


def backfill_table(rows: Iterable[tuple]) -> tuple[pa.Table, list[list]]:
    """(rows, totals) of a backfilled day from (project, dimension, category, downloads[, in_totals]) tuples.

    Names are normalised and duplicates summed, so a source may yield the same key more than once. A row may carry
    a fifth field, whether it counts in the all-project totals: a synthetic history writes the detail it folds (as
    compaction folds a streamed day) with project None, counted in the totals only, and the `other` rows that
    replace it with False.
    """
    import pyarrow as pa

    from pypi_pulse.sink.history import ROWS

    per_project: dict[tuple, int] = defaultdict(int)
    totals: dict[tuple, int] = defaultdict(int)
    for row in rows:
        project, dim, cat, n = row[:4]
        if not n:
            continue
        if project is not None:
            per_project[(normalize(project), dim, cat)] += int(n)
        if len(row) < 5 or row[4]:
            totals[(dim, cat)] += int(n)
    keys = list(per_project)
    table = pa.Table.from_arrays(
        [
            pa.array([k[0] for k in keys], pa.string()),
            pa.array([k[1] for k in keys], pa.string()),
            pa.array([k[2] for k in keys], pa.string()),
            pa.array([per_project[k] for k in keys], pa.int64()),
        ],
        schema=ROWS,
    )
    return table, sorted(([d, c, n] for (d, c), n in totals.items()), key=lambda t: (t[0], t[1] or ""))


def retention_anchors(now: Optional[float] = None) -> tuple[int, str]:
    """The newest window start and day that retention may count back from: the newest data, but never beyond the
    wall clock (plus the accepted skew). The dataflow dead-letters such events; a sink written by a version that
    did not (one window stamped 9999-12-31) must not make retention delete every real row."""
    from pypi_pulse.bounds import latest_second

    latest = latest_second(time.time() if now is None else now)
    return latest, time.strftime("%Y-%m-%d", time.gmtime(latest))
