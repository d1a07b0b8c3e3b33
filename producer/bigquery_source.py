"""`produce --source bigquery`: poll BigQuery incrementally and publish rows to Kafka in event-time order.

With `--delay D` each row leaves at its event time + D minutes, so the per-second view downstream looks like the
live stream, D minutes late (D must cover BigQuery's load latency for that to be faithful; later loads are still
sent, as late events). Without it, rows are sent as soon as they are read. Polls wait `--poll-interval`, stretched
so that the daily budget lasts until midnight UTC; a historical range (`--start`/`--end`) is read day by day
without waiting.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import TYPE_CHECKING, Optional

import structlog
from rich.console import Console

from pypi_pulse.errors import UserError
from pypi_pulse.extras import require
from pypi_pulse.producer.bigquery import IncrementalReader, ParquetExport, merge_pending
from pypi_pulse.producer.bigquery_client import human_bytes
from pypi_pulse.producer.bigquery_costs import BigQuerySession
from pypi_pulse.producer.bigquery_query import parse_bound, rows_query, time_range
from pypi_pulse.producer.publisher import Publisher, Summary

if TYPE_CHECKING:
    from pypi_pulse.config import Settings

log = structlog.get_logger(__name__)


def _plan(settings: Settings, now: float) -> tuple[float, Optional[float]]:
    start = parse_bound(settings.start, "--start")
    end = parse_bound(settings.end, "--end")
    if start is None:
        if end is not None:
            raise UserError("--end needs --start: pass both for a historical pull, or neither for live polling")
        start = now - (settings.delay or 0.0) * 60
    if end is not None and end <= start:
        raise UserError("--end must be after --start")
    if start > now:
        raise UserError("--start is in the future: pass a past date or time")
    return start, end


def run_bigquery_source(
    pub: Publisher,
    settings: Settings,
    stop: threading.Event,
    *,
    session: Optional[BigQuerySession] = None,
    clock=time.time,
    console: Optional[Console] = None,
) -> Summary:
    """Poll until stopped, the range is read, or the budget is spent (a `UserError` after flushing what was read)."""
    console = console or Console(stderr=True)
    now = clock()
    start, end = _plan(settings, now)
    if session is None:
        require("bigquery")
        session = BigQuerySession(settings)
    exporter = ParquetExport(settings.export) if settings.export else None
    reader = IncrementalReader(session, start, end, settings.overlap_minutes * 60, exporter)
    delay_s = settings.delay * 60 if settings.delay is not None else None
    _announce(session, reader, console, now)

    s = pub.summary
    pending: list = []
    next_poll = now
    try:
        while not stop.is_set():
            now = clock()
            if now >= next_poll and not reader.finished:
                new = reader.poll(now)
                s.read += len(new)
                merge_pending(pending, new)
                wait = (
                    0.0
                    if reader.catching_up
                    else session.guard.interval(settings.poll_interval, session.last_billed, now)
                )
                next_poll = now + wait
                if wait > settings.poll_interval:
                    log.info("bigquery poll interval stretched to fit the daily budget", seconds=round(wait))
            _send_due(pub, pending, delay_s, clock())
            if reader.finished and not pending:
                break
            due = pending[0].epoch + delay_s if pending and delay_s is not None else None
            wake = next_poll if due is None else min(due, next_poll)
            if reader.finished and due is not None:
                wake = due
            stop.wait(max(0.0, min(wake - clock(), 5.0)))
            pub.poll()
    finally:
        if exporter is not None:
            exporter.close()
        pub.flush()
    return s


def _send_due(pub: Publisher, pending: list, delay_s: Optional[float], now: float) -> None:
    sent = 0
    while pending and (delay_s is None or pending[0].epoch + delay_s <= now):
        e = heapq.heappop(pending)
        pub.send(e.value, e.key)
        sent += 1
        if sent % 10_000 == 0:
            pub.poll()
    if sent:
        pub.poll()


def _announce(session: BigQuerySession, reader: IncrementalReader, console: Console, now: float) -> None:
    """Before anything is billed: what the first query will cost, against the per-query cap and the budget."""
    lo, hi = reader.window(now)
    if hi <= lo:
        hi = lo + 1
    sql, params = rows_query(session.settings)
    params = [*time_range(lo, hi), *params]
    est = session.estimate(sql, params, "poll")
    g = session.guard
    console.print(
        f"bigquery: dry run: the first query will scan ~{human_bytes(est)} (≈ ${g.cost(est):,.2f}); "
        f"cap {human_bytes(session.max_bytes)}/query, budget {human_bytes(g.remaining())} left of "
        f"{human_bytes(g.budget)} today (UTC)",
        highlight=False,
        soft_wrap=True,
    )
