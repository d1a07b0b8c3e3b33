"""Where the dataflow writes: the sink (windows, rollups, counters) and the dead-letter topic."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import nullcontext
from typing import Optional

import structlog
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pypi_pulse.dataflow.block_writer import BlockWriter
from pypi_pulse.dataflow.clock import Flush, SealedBlock, TimeShare, on_time_or_history
from pypi_pulse.dataflow.heap import return_freed_memory
from pypi_pulse.metrics import dataflow_metrics
from pypi_pulse.producer.delivery import Delivery, DeliveryOptions
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket
from pypi_pulse.sink.retry import Outage, RetryPolicy, patiently
from pypi_pulse.sink.summaries import summarize

log = structlog.get_logger(__name__)


class _StorePartition(StatelessSinkPartition):
    def __init__(
        self,
        url: str,
        window_retention_s: float,
        rollup_retention_days: int,
        prune_every_s: float = 60.0,
        detail_min_daily_downloads: int = 0,
        block_writer: bool = False,
        lazy_block_writer: bool = False,
        retry: RetryPolicy = RetryPolicy(),
        lock_wait_s: float = 10.0,
    ):
        self.url = url
        self.sink = open_sink(url)
        # a locked or unreachable sink is waited out (sink/retry.py): the backlog stays in Kafka meanwhile
        self.retry = retry
        self.lock_wait_s = lock_wait_s
        self.sink.set_lock_wait(lock_wait_s)
        self.outage = Outage(retry.log_every_s, on_change=dataflow_metrics.SINK_UNAVAILABLE_SINCE.set)
        self.writer_attempts = 0  # the block writer's failed attempts already counted
        self.use_block_writer = block_writer
        self.lazy_block_writer = lazy_block_writer
        self.writer: Optional[BlockWriter] = (
            None  # started with the first write (lazy: the first block); only the worker that writes has one
        )
        self.window_retention_s = window_retention_s
        self.rollup_retention_days = rollup_retention_days
        self.prune_every_s = prune_every_s
        self.detail_min_daily_downloads = detail_min_daily_downloads
        self.last_prune = time.monotonic()
        self.applying: deque = deque()  # (bucket, slice iterator or None) of sealed blocks to apply
        self.slice_time = TimeShare(self.SLICE_BURST_S)
        self.window_lag_s = 0.0  # how far behind real time the newest window reached the sink

    # Sealed rollup blocks are applied a slice at a time (`Sink.apply_in_slices`) between window writes, taking at
    # most this share of the worker's wall-clock time: a block at 20,000 events/s is ~50 s of upserts, and a fixed
    # budget per write let a dataflow that fell behind (more writes per second) spend all its time on slices.
    SLICE_SHARE = 0.25
    SLICE_BURST_S = 0.25
    # Live, every window waits for the slice being applied, and on a small machine the slices' CPU comes out of the
    # stream's (benchmarks/latency.py at 20,000 events/s on two cores fell 5 s behind while a block went in at a
    # quarter share). So slices take their full share only while the newest window reached the sink on time (or
    # it is history being replayed, which no one waits for); behind real time they get a trickle that keeps the
    # block moving, and the stream catches up first.
    SLICE_SHARE_BEHIND = 0.05

    def _slice_share(self) -> float:
        return self.SLICE_SHARE if on_time_or_history(self.window_lag_s) else self.SLICE_SHARE_BEHIND

    def write_batch(self, items: list) -> None:
        windows: dict = {}
        buckets = []
        stats = None
        final = False
        for item in items:
            flush: Flush = item[1] if isinstance(item, tuple) else item
            for w in flush.windows:
                windows[w.start] = w  # the newest version of a window wins
            buckets.extend(flush.buckets)
            stats = flush.stats
            final = final or flush.final
        if self.use_block_writer and self.writer is None and not final and (buckets or not self.lazy_block_writer):
            self.writer = BlockWriter(
                self.url, shared_lock=not self.sink.concurrent_writers, retry=self.retry, lock_wait_s=self.lock_wait_s
            )
        self._sync_writer()
        took = 0.0

        def write_windows() -> None:
            nonlocal took
            t0 = time.perf_counter()
            with self._turn():
                self.sink.write(list(windows.values()), [], stats)
            took = time.perf_counter() - t0

        self._patiently(write_windows)
        if windows:
            self.window_lag_s = time.time() - (max(windows) + 1)
        dataflow_metrics.sink_written(took, windows.keys(), time.time())
        log.debug("sink.write", windows=len(windows), buckets=len(buckets), seconds=round(took, 4))
        if self.writer is not None and final:
            # end of input: the writer finishes the blocks it has; those sealed now go in whole, below (faster)
            handed = self.writer.pending | self.writer.finished_ids
            self.writer.close()
            self.writer = None
            buckets = [b for b in buckets if b.bucket not in handed]
        if self.writer is not None:
            self.writer.set_lag(self.window_lag_s)
            self._hand_over(buckets)
        else:
            queued = {b.bucket for b, _ in self.applying}
            for b in buckets:
                if b.bucket not in queued:  # the clock re-sends a block until it sees it applied
                    self.applying.append((b, None))
                    queued.add(b.bucket)
            self._apply_blocks(until_done=final)  # at end of input, blocks not started go in whole (faster)
        if time.monotonic() - self.last_prune >= self.prune_every_s:
            self.last_prune = time.monotonic()
            removed = self._patiently(self._upkeep)  # each step is idempotent: a retry redoes what is left
            if any(removed.values()):
                log.info("sink.pruned", **removed)

    def _upkeep(self) -> dict:
        with self._turn():
            removed = self.sink.prune(self.window_retention_s, self.rollup_retention_days)
            removed["days_compacted"] = self.sink.compact(self.detail_min_daily_downloads)
            # one complete day per pass (a real PyPI day takes seconds to summarise), after its fold
            removed["days_summarised"] = summarize(self.sink, max_days=1)
        return removed

    def _patiently(self, fn):
        """fn() until the sink takes it: transient errors are waited out (each failed attempt counted), others
        counted and raised."""
        try:
            return patiently(
                fn,
                self.retry,
                self.outage,
                on_failure=lambda _exc: dataflow_metrics.SINK_ERRORS.inc(),
                between=self._sync_writer,
            )
        except Exception:
            dataflow_metrics.SINK_ERRORS.inc()
            raise

    def _sync_writer(self) -> None:
        """Take in the block writer's own outage (it retries in its process): counted and logged here, once."""
        w = self.writer
        if w is None:
            self.outage.ok("block_writer")
            return
        attempts, since, error = w.health()
        if attempts > self.writer_attempts:
            dataflow_metrics.SINK_ERRORS.inc(attempts - self.writer_attempts)
        if since:
            if attempts > self.writer_attempts:
                self.outage.failed(error, since, "block_writer", attempts - self.writer_attempts)
        else:
            self.outage.ok("block_writer")
        self.writer_attempts = attempts

    def _turn(self):
        return self.writer.sink_turn() if self.writer is not None else nullcontext()

    def _hand_over(self, buckets: list) -> None:
        """Sealed blocks go to the block writer process; the ones it has applied are reported."""
        assert self.writer is not None  # called only with a block writer
        try:
            for b in buckets:
                if not self.writer.knows(b.bucket):  # the clock re-sends a block until it sees it applied
                    took = self.writer.submit(b)
                    size = {"bytes": b.counts.nbytes} if isinstance(b.counts, SealedBlock) else {"rows": len(b.counts)}
                    log.info("rollup.handed_over", bucket=b.bucket, **size, seconds=round(took, 3))
            for bucket, seconds in self.writer.poll():
                log.info("rollup.applied", bucket=bucket, seconds=round(seconds, 1))
        except Exception:
            dataflow_metrics.SINK_ERRORS.inc()
            raise
        dataflow_metrics.ROLLUP_PENDING.set(len(self.writer.pending))

    def _apply_blocks(self, until_done: bool) -> None:
        """Apply queued blocks a slice at a time while the time credit lasts; `until_done` (end of input, no window
        waits any more): all of them, and a block not started yet goes in whole, in one transaction (faster)."""
        self.slice_time.refill(self._slice_share())
        while self.applying and (until_done or self.slice_time.credit_s > 0):
            t0 = time.monotonic()
            try:
                done = self._patiently(lambda t0=t0: self._apply_step(until_done, t0))
                if done:
                    self.applying.popleft()
                    return_freed_memory()  # the block's columns (hundreds of MB at 20,000 events/s) back to the system
            finally:
                self.slice_time.spend(time.monotonic() - t0)
        dataflow_metrics.ROLLUP_PENDING.set(len(self.applying))

    def _apply_step(self, until_done: bool, t0: float) -> bool:
        """One slice of the first queued block (or all of it); True once the block is applied."""
        bucket, slices = self.applying[0]
        if isinstance(bucket.counts, SealedBlock):  # left to a writer that has ended (end of input)
            bucket = RollupBucket(bucket.bucket, bucket.counts.merged(), span=bucket.span)
            self.applying[0] = (bucket, slices)
        try:
            if slices is None and until_done:
                self.sink.write([], [bucket], None)
                log.info(
                    "rollup.applied",
                    bucket=bucket.bucket,
                    rows=len(bucket.counts),
                    seconds=round(time.monotonic() - t0, 3),
                )
                return True
            if slices is None:
                slices = self.sink.apply_in_slices(bucket)
                self.applying[0] = (bucket, slices)
            return next(slices, StopIteration) is StopIteration
        except Exception:
            # a failed slice ends its generator: a retry starts the block's slices afresh, and the sink skips the
            # slices already recorded, so the block still counts once (a block begun in slices is never written whole)
            self.applying[0] = (bucket, None if slices is None else self.sink.apply_in_slices(bucket))
            raise

    def close(self) -> None:
        # end of input (batch runs): every sealed block is in before the run ends
        if self.writer is not None:
            self.writer.close()
        self._apply_blocks(until_done=True)
        self.sink.close()


class StoreSink(DynamicSink):
    def __init__(
        self,
        url: str,
        window_retention_s: float = 48 * 3600,
        rollup_retention_days: int = 400,
        detail_min_daily_downloads: int = 0,
        block_writer: bool = False,
        lazy_block_writer: bool = False,
        retry: RetryPolicy = RetryPolicy(),
        lock_wait_s: float = 10.0,
    ):
        self.url = url
        self.retry = retry
        self.lock_wait_s = lock_wait_s
        self.block_writer = block_writer
        self.lazy_block_writer = lazy_block_writer
        self.window_retention_s = window_retention_s
        self.rollup_retention_days = rollup_retention_days
        self.detail_min_daily_downloads = detail_min_daily_downloads

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(
            self.url,
            self.window_retention_s,
            self.rollup_retention_days,
            detail_min_daily_downloads=self.detail_min_daily_downloads,
            block_writer=self.block_writer,
            lazy_block_writer=self.lazy_block_writer,
            retry=self.retry,
            lock_wait_s=self.lock_wait_s,
        )


class _DeadLetterPartition(StatelessSinkPartition):
    """Dead letters go through the producer's Delivery: kept until acknowledged, sent again by a new client after
    a broker restart (into the topic recreated with its partitions), and one log line while the broker is away.
    A batch does not wait for its acknowledgements (a broker away would stall the whole dataflow): a thread of its
    own serves the client meanwhile, so that a stalled client is replaced even when no dead letter follows. The end
    of input waits for them, unless stopped (Ctrl-C), when what is left is counted as undelivered."""

    SERVE_S = 0.2
    FLUSH_S = 10.0  # at the end of input: how long the broker may make no progress before we give up

    def __init__(self, bootstrap: str, topic: str, options: Optional[DeliveryOptions] = None):
        from pypi_pulse.dataflow.source import STOP

        self.topic = topic
        self.delivery = Delivery(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 20},
            options or DeliveryOptions(),
            topics=(topic,),
            component="dataflow_dead_letters",
        )
        self.delivery.stop = STOP
        self._lock = threading.Lock()  # Delivery is not thread-safe: the worker and the serving thread take turns
        self._closed = threading.Event()
        threading.Thread(target=self._serve, name="dead-letters", daemon=True).start()

    def _serve(self) -> None:
        while not self._closed.wait(self.SERVE_S):
            with self._lock:
                self.delivery.poll(0)

    def write_batch(self, items: list) -> None:
        with self._lock:
            for original, reason in items:
                self.delivery.produce(
                    self.topic, original, headers=[("reason", reason.encode()), ("stage", b"dataflow")]
                )
            self.delivery.poll(0)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            left = self.delivery.flush(self.FLUSH_S)
        if left:
            log.error("dead_letters.unacknowledged", topic=self.topic, events=left)


class DeadLetterSink(DynamicSink):
    """Malformed events, byte for byte, with the reason in a `reason` header."""

    def __init__(self, bootstrap: str, topic: str, options: Optional[DeliveryOptions] = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.options = options

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        return _DeadLetterPartition(self.bootstrap, self.topic, self.options)
