"""The step between the clock and the store that records each sealed block's per-project downloads for trending.

Why a step of its own, and here: the clock already holds each block's exact, final counts, and everything that
reaches the store step passes through this one first, on the same worker, so a block's rows (sink/recent.py) are
written before the store can apply the block. A crash in between loses nothing: the clock re-sends every block the
sink has not applied, and writing a block's rows again replaces them with the same figures. The parse step and
the clock are left as they are, and the rollups' exactly-once bookkeeping is not touched: these rows are a
derived view, idempotent by their key.

Its cost is a block's `overall` tallies summed per project every 10 minutes (the rest of a block is never merged
here) and two upserts; a live block comes packed, so each of its minutes is unpacked first, on the worker's time:
51 ms a minute at 20,000 events/s (docs/trending.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import structlog

from pypi_pulse.dataflow.clock import Flush
from pypi_pulse.sink import recent
from pypi_pulse.sink.retry import Outage, RetryPolicy, patiently

if TYPE_CHECKING:
    from pypi_pulse.sink.base import Sink

log = structlog.get_logger(__name__)

DAY_S = 86400


class RecentDownloads:
    """Called with every item leaving the clock; returns it unchanged, after writing its blocks' rows."""

    def __init__(self, sink_url: str, recent_keep_s: float, totals_keep_days: int, retry: RetryPolicy = RetryPolicy()):
        from pypi_pulse.sink.trending import TrendingOptions

        self.sink_url = sink_url
        # as long as the longest trending window needs (it ends up to an hour behind the newest block), within the
        # retention of the per-second windows: a block adds a row for every project downloaded in it
        self.recent_keep_s = min(recent_keep_s, (TrendingOptions.current().max_window_hours + 1) * 3600)
        self.totals_keep_s = totals_keep_days * DAY_S
        self.retry = retry
        self.outage = Outage(retry.log_every_s, step="recent_downloads")
        self.sink: Optional[Sink] = None
        self.written: set[tuple] = set()  # (block, part) written by this process: a resend writes nothing new

    def __call__(self, item):
        flush: Flush = item[1] if isinstance(item, tuple) else item
        blocks = [b for b in flush.buckets if (b.bucket, b.part) not in self.written and recent.within_one_hour(b)]
        if blocks:
            rows = [
                (b.bucket + b.span, b.part[0] if b.part else 0, recent.overall_by_project(b.counts)) for b in blocks
            ]
            newest = max(end for end, _, _ in rows)
            patiently(lambda: self._write(rows, newest), self.retry, self.outage, source="recent_downloads")
            self.written.update((b.bucket, b.part) for b in blocks)
            log.debug("recent.blocks", blocks=len(rows), newest=newest)
        return item

    def _write(self, rows, newest: int) -> None:
        if self.sink is None:
            from pypi_pulse.sink.base import open_sink

            self.sink = open_sink(self.sink_url)
        recent.record_blocks(self.sink, rows)
        recent.prune(self.sink, newest, self.recent_keep_s, self.totals_keep_s)
