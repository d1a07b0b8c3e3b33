"""Where a shard's sealed rollup blocks go: its part of each block to the history as a file, and the part's
per-project downloads to the sink for trending, merged and written in the process that holds the shard's clock, on
one background thread per process.

Why there, and not in the one store step after the merge: a block is the only large thing a shard ever emits (a
10-minute block at PyPI's volume is millions of rows), and the history takes each shard's part as a file of its
own. Written where it was sealed, a block never crosses to another worker or process, the shards of a cluster write
theirs in parallel, and the merge sees only the small per-second partials.

Why a background thread: merging a shard's block at 66,000 events/s takes seconds of numpy sorts, Arrow and Parquet
work, which release the GIL; on the worker it held every window of the shard's worker up for as long. One thread a
process also takes the shards' blocks one at a time, so the memory of one merge is held at once, not of every shard
sealing the same block together.

Exactly once: the clock keeps a block's minutes, and its `blocks_before` below the block, until the write has
succeeded (`written`), so the store step compacts a day only once every shard has written its blocks of that day. A
crash in between re-seals the block after recovery; the history then skips the part it already holds
(`Sink.write_buckets`), and the trending rows are written again with the same figures (sink/recent.py).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Optional

import structlog

from pypi_pulse.sink import recent
from pypi_pulse.sink.model import RollupBucket
from pypi_pulse.sink.retry import Outage, RetryPolicy, patiently

if TYPE_CHECKING:
    from pypi_pulse.dataflow.clock import SealedBlock
    from pypi_pulse.sink.base import Sink

log = structlog.get_logger(__name__)

DAY_S = 86400

_writer: Optional[ThreadPoolExecutor] = None
_writer_made = threading.Lock()


def _block_writer() -> ThreadPoolExecutor:
    """This process's one thread for sealed blocks (see the module's docstring)."""
    global _writer
    with _writer_made:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocks")
        return _writer


class BlockOutput:
    """One shard's writer of sealed blocks; the sink is opened on the first block (most flushes carry none), and
    only ever used on the block thread."""

    def __init__(
        self,
        sink_url: str,
        history: Optional[str],
        recent_keep_s: float,
        totals_keep_days: int,
        retry: RetryPolicy = RetryPolicy(),
        lock_wait_s: float = 10.0,
    ):
        from pypi_pulse.sink.trending import TrendingOptions

        self.sink_url, self.history, self.retry, self.lock_wait_s = sink_url, history, retry, lock_wait_s
        # as long as the longest trending window needs (it ends up to an hour behind the newest block), within the
        # retention of the per-second windows: a block adds a row for every project downloaded in it
        self.recent_keep_s = min(recent_keep_s, (TrendingOptions.current().max_window_hours + 1) * 3600)
        self.totals_keep_s = totals_keep_days * DAY_S
        self.outage = Outage(retry.log_every_s, step="blocks")
        self.sink: Optional[Sink] = None
        self.in_flight: dict[int, Future] = {}  # block -> its write on the block thread

    def submit(self, block: SealedBlock, part: Optional[tuple[int, int]]) -> None:
        """Merge and write `block` on the block thread; `written` says when it is done."""

        def merge_and_write() -> None:
            self.write([RollupBucket(block.bucket, block.counts, block.span, part)])

        self.in_flight[block.bucket] = _block_writer().submit(merge_and_write)

    def written(self, wait: bool = False) -> set[int]:
        """The blocks whose write has finished since the last call (with `wait`, once every one has). A write that
        failed past the sink's retry policy fails here, on the worker, as it would have written there."""
        done = {b for b, f in self.in_flight.items() if wait or f.done()}
        for b in sorted(done):
            self.in_flight.pop(b).result()
        return done

    def write(self, buckets: list[RollupBucket]) -> None:
        """Trending rows first, then the block files: a block the history holds has its trending rows."""
        if not buckets:
            return
        from pypi_pulse.metrics import dataflow_metrics

        try:
            patiently(
                lambda: self._write(buckets),
                self.retry,
                self.outage,
                source="blocks",
                on_failure=lambda _exc: dataflow_metrics.SINK_ERRORS.inc(),
            )
        except Exception:
            dataflow_metrics.SINK_ERRORS.inc()
            raise
        for b in buckets:
            log.info("rollup.applied", bucket=b.bucket, part=b.part, rows=len(b.counts))

    def _write(self, buckets: list[RollupBucket]) -> None:
        if self.sink is None:
            from pypi_pulse.sink.base import open_sink

            self.sink = open_sink(self.sink_url, history=self.history)
            self.sink.set_lock_wait(self.lock_wait_s)
        rows = [
            (b.bucket + b.span, b.part[0] if b.part else 0, recent.overall_by_project(b.counts))
            for b in buckets
            if recent.within_one_hour(b)
        ]
        if rows:
            recent.record_blocks(self.sink, rows)
            recent.prune(self.sink, max(end for end, _, _ in rows), self.recent_keep_s, self.totals_keep_s)
        self.sink.write_buckets(buckets)  # idempotent, as the trending rows: safe to retry

    def close(self) -> None:
        if self.sink is not None:
            _block_writer().submit(self.sink.close).result()
