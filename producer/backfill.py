"""Filling the daily rollups of past days without streaming every raw event through Kafka.

Three sources, one contract: for each UTC day, (project, dimension, category, downloads) rows with the dimensions
of the history (overall, with_mirrors, python_major, python_minor, system, country, installer, cpu, file_type,
version, ci). Each day is written by `Sink.backfill_day` as its day file, which replaces whatever the stream stored
for it and marks it backfilled, after which the stream adds nothing to it (sink/history.py): a day is never
counted twice, and a day that completed is skipped on the next run unless `force` is given.

- bigquery: one aggregate query per day (`pypi_pulse.producer.bigquery.daily_aggregates`).
- file:PATH: the events are read once and aggregated locally with the dataflow's own parser
  (producer/backfill_sources.py `file_days`), so a file gives exactly the rollups the stream would have given.
- synthetic: aggregate-level generation, scaled down (producer/backfill_sources.py `SyntheticHistory`); no raw
  events at all.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import structlog

from pypi_pulse.errors import UserError
from pypi_pulse.extras import require_for
from pypi_pulse.producer.backfill_sources import Row, SyntheticHistory, file_days
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.queries import backfilled_days
from pypi_pulse.sink.recent import record_day_profile

log = structlog.get_logger(__name__)


@dataclass
class BackfillSummary:
    days_written: int = 0
    days_skipped: int = 0
    rows: int = 0
    events_read: int = 0
    events_rejected: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "days written": self.days_written,
            "days skipped (already backfilled)": self.days_skipped,
            "rows": self.rows,
            "events read": self.events_read,
            "events rejected": self.events_rejected,
            "seconds": round(self.seconds, 2),
        }


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def check_range(start: dt.date, end: dt.date, today: Optional[dt.date] = None) -> None:
    """Only complete UTC days can be backfilled: the day in progress belongs to the stream."""
    today = today or dt.datetime.now(dt.UTC).date()
    if start > end:
        raise UserError(f"--start {start} is after --end {end}: give an earlier --start")
    if end >= today:
        raise UserError(
            f"--end {end} is not a complete UTC day: backfill ends at yesterday ({today - dt.timedelta(days=1)}) at the latest"
        )


# ---- driver -------------------------------------------------------------------------------------------------
def backfill(
    sink: Sink,
    source: str,
    start: dt.date,
    end: dt.date,
    *,
    settings=None,
    force: bool = False,
    seed: int = 0,
    daily_downloads: float = 86_400_000,
    projects: int = 1000,
    other_countries: int = 20,
    on_day: Optional[Callable[[str, int], None]] = None,
    stop: Optional[threading.Event] = None,
    today: Optional[dt.date] = None,
    include: Iterable[str] = (),
    detail_min_downloads: int = 0,
) -> BackfillSummary:
    """Fill [start, end] from `source`; days already backfilled are skipped unless `force`. Synthetic: the
    `projects` most popular projects and those in `include` get rows of their own (see `SyntheticHistory`)."""
    check_range(start, end, today)
    require_for(source=source)
    t0 = time.monotonic()
    summary = BackfillSummary()
    done = set() if force else set(backfilled_days(sink, start, end))
    # newest first: when `up` fills a first history in the background, the recent weeks appear first
    todo = [d for d in reversed(days_between(start, end)) if d.isoformat() not in done]
    summary.days_skipped = len(days_between(start, end)) - len(todo)
    summary.skipped = sorted(done)
    tag = source if not source.startswith("file:") else "file"
    log.info(
        "backfill.start", source=source, start=str(start), end=str(end), days=len(todo), skipped=summary.days_skipped
    )

    def day_rows() -> Iterator[tuple[dt.date, Iterable[Row]]]:
        if source == "synthetic":
            hist = SyntheticHistory(
                daily_downloads,
                projects,
                seed,
                anchor=today,
                other_countries=other_countries,
                include=include,
                detail_min_downloads=detail_min_downloads,
            )
            for d in todo:
                rows = hist.rows(d)
                yield d, rows
                record_day_profile(
                    sink, hist.block_totals(d, sum(r[3] for r in rows if r[1] == "overall" and r[-1] is not False))
                )
        elif source.startswith("file:"):
            per_day, summary.events_read, summary.events_rejected = file_days(Path(source[5:]))
            for d in todo:
                if d.isoformat() in per_day:
                    yield d, per_day[d.isoformat()]
                else:
                    on_day and on_day(d.isoformat(), 0)  # the file has nothing for this day: left as it is
        elif source == "bigquery":
            from pypi_pulse.producer.bigquery import daily_aggregates

            for d in todo:
                yield d, daily_aggregates(settings, d)
        else:
            raise UserError(f"unknown backfill source {source!r}: use synthetic, file:PATH or bigquery")

    for d, rows in day_rows():
        if stop is not None and stop.is_set():
            break
        n = sink.backfill_day(d.isoformat(), rows, tag)
        summary.days_written += 1
        summary.rows += n
        if on_day:
            on_day(d.isoformat(), n)
    from pypi_pulse.sink.summaries import summarize

    summarize(sink)  # the history tabs read long periods from the summaries of complete days
    summary.seconds = time.monotonic() - t0
    log.info("backfill.done", **summary.as_dict())
    return summary


# `up`'s first history lives in producer/demo_history.py; imported here for the callers that know it by this name
from pypi_pulse.producer.demo_history import first_history, first_history_background  # noqa: E402,F401
