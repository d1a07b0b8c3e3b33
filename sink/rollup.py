"""Turning a sealed bucket's counts into daily rows, identically for every sink backend."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Optional

from pypi_pulse.sink.model import RollupBucket
from pypi_pulse.sink.schema import to_db_category


def daily_rows(buckets: Iterable[RollupBucket]) -> tuple[list[tuple], list[tuple]]:
    """(day, project, dimension, category, n) rows and (day, dimension, category, n) all-project totals."""
    per_project: dict[tuple, int] = defaultdict(int)
    totals: dict[tuple, int] = defaultdict(int)
    for b in buckets:
        for (day, project, dim, cat), n in b.counts.items():
            c = to_db_category(cat)
            per_project[(day, project, dim, c)] += n
            totals[(day, dim, c)] += n
    return [(*k, n) for k, n in per_project.items()], [(*k, n) for k, n in totals.items()]
