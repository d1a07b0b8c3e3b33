"""The history `pypi-pulse up` backfills on an empty sink, so that every view shows real-looking data at once.

Which projects get rows of their own: every project of the category map (so that the Categories view shows all
its categories), and the 1,000 most downloaded by real weight (flask, django, torch... all answer); the rest of
PyPI (the remainder of the top 15,000 and the long tail beyond, about a third of all downloads at the shipped
weights) counts in every all-project total but has no rows of its own. Projects under
`backfill_detail_min_downloads` a day keep one `other` row per fine dimension, as the sink folds a streamed day
(`rollup_detail_min_downloads`), with a threshold sized for a demo. Measured on the 2-core machine, 180 days at
`up`'s 1,000 events/s: 6.1 million rows, 450 MB of SQLite and 64 s (the machine shared with other work) with the
fold at 100,000 downloads a day, with PyPI's long tail taking 23% of the volume; before the long tail (4%) it was
6.4 million rows, 458 MB and 42 s, and 11.3 million rows, 927 MB and 68 s with every project in full detail.
Most of what remains is the pypistats breakdowns (overall, mirrors, Python major and minor, system), which the
sink's rule keeps exact for every project: some 20 rows per project and day.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Optional

import structlog
from rich.console import Console

log = structlog.get_logger(__name__)

DEMO_PROJECTS = 1000
DEMO_OTHER_COUNTRIES = 10


def first_history(
    settings,
    days: Optional[int] = None,
    stop: Optional[threading.Event] = None,
    on_start: Optional[Callable[[int], None]] = None,
):
    """`days` of synthetic history ending yesterday, sized like the live stream (`settings.rate` events per
    second); None when the sink already has history or no days are asked for. `on_start(days)` hears when it
    begins."""
    from pypi_pulse.categories import category_map
    from pypi_pulse.producer.backfill import backfill
    from pypi_pulse.sink.base import open_sink
    from pypi_pulse.sink.queries import has_history

    days = settings.backfill_days if days is None else days
    if days <= 0:
        return None
    with open_sink(settings.sink_url, history=settings.history_path) as sink:
        if has_history(sink):
            return None
        today = dt.datetime.now(dt.UTC).date()
        if on_start is not None:
            on_start(days)
        return backfill(
            sink,
            "synthetic",
            today - dt.timedelta(days=days),
            today - dt.timedelta(days=1),
            seed=settings.seed or 0,
            daily_downloads=settings.rate * 86400,
            projects=DEMO_PROJECTS,
            other_countries=DEMO_OTHER_COUNTRIES,
            include=category_map(),
            detail_min_downloads=settings.backfill_detail_min_downloads,
            stop=stop,
            today=today,
        )


def first_history_background(
    settings, stop: Optional[threading.Event] = None, console: Optional[Console] = None
) -> None:
    """`first_history` for a background thread of `up`, which says on its console when it starts and ends; a
    failure is reported, never kills the supervisor."""
    console = console or Console(stderr=True)

    def started(days: int) -> None:
        log.info("backfill.first_history_started", days=days)
        console.print(
            f"history backfill started: {days} days of synthetic history, in the background (the history "
            "tabs fill from the newest day back)"
        )

    try:
        summary = first_history(settings, stop=stop, on_start=started)
    except Exception as exc:  # noqa: BLE001 - the live pipeline must keep running without a history
        log.warning("backfill.first_history_failed", error=f"{type(exc).__name__}: {exc}")
        console.print(f"[yellow]history backfill failed: {type(exc).__name__}: {exc}[/]")
        return
    if summary is not None:
        log.info(
            "backfill.first_history_done",
            days=summary.days_written,
            rows=summary.rows,
            seconds=round(summary.seconds, 1),
        )
        console.print(
            f"history backfill done: {summary.days_written} days, {summary.rows:,} rows in {summary.seconds:.0f} s"
        )
