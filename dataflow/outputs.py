"""Where the dataflow writes: the sink (windows, rollups, counters) and the dead-letter topic."""

from __future__ import annotations

import threading
import time
from typing import Optional

import structlog
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pypi_pulse.dataflow.clock import Flush
from pypi_pulse.metrics import dataflow_metrics
from pypi_pulse.producer.delivery import Delivery, DeliveryOptions
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.retry import Outage, RetryPolicy, patiently
from pypi_pulse.sink.summaries import summarize

log = structlog.get_logger(__name__)


class _StorePartition(StatelessSinkPartition):
    """Windows and counters to the sink's database, and the history's upkeep: retention, and the compaction of days
    whose blocks every shard has written (their clocks write them: dataflow/blocks.py)."""

    def __init__(
        self,
        url: str,
        history: Optional[str],
        window_retention_s: float,
        rollup_retention_days: int,
        prune_every_s: float = 60.0,
        detail_min_daily_downloads: int = 0,
        retry: RetryPolicy = RetryPolicy(),
        lock_wait_s: float = 10.0,
    ):
        self.sink = open_sink(url, history=history)
        # a locked or unreachable sink is waited out (sink/retry.py): the backlog stays in Kafka meanwhile
        self.retry = retry
        self.sink.set_lock_wait(lock_wait_s)
        self.outage = Outage(retry.log_every_s, on_change=dataflow_metrics.SINK_UNAVAILABLE_SINCE.set)
        self.window_retention_s = window_retention_s
        self.rollup_retention_days = rollup_retention_days
        self.prune_every_s = prune_every_s
        self.detail_min_daily_downloads = detail_min_daily_downloads
        self.last_prune = time.monotonic()
        self.blocks_before: Optional[float] = None  # the dataflow's: days ending by then are complete

    def write_batch(self, items: list) -> None:
        windows: dict = {}
        stats = None
        for item in items:
            flush: Flush = item[1]  # ("all", the merged flush)
            for w in flush.windows:
                windows[w.start] = w  # the newest version of a window wins
            stats = flush.stats
        if stats is not None:
            self.blocks_before = stats.blocks_before
        took = 0.0

        def write() -> None:
            nonlocal took
            t0 = time.perf_counter()
            self.sink.write(list(windows.values()), stats)  # idempotent: safe to retry
            took = time.perf_counter() - t0

        self._patiently(write)
        dataflow_metrics.sink_written(took, windows.keys(), time.time())
        if time.monotonic() - self.last_prune >= self.prune_every_s:
            self.last_prune = time.monotonic()
            removed = self._patiently(self._upkeep)  # each step is idempotent: a retry redoes what is left
            if any(removed.values()):
                log.info("sink.pruned", **removed)

    def _upkeep(self) -> dict:
        removed = self.sink.prune(self.window_retention_s, self.rollup_retention_days)
        if self.blocks_before is not None:  # until every shard has reported, no day is known to be complete
            removed["days_compacted"] = self.sink.compact(self.detail_min_daily_downloads, self.blocks_before)
        # one complete day per pass (a real PyPI day takes seconds to summarise), after its compaction
        removed["days_summarised"] = summarize(self.sink, max_days=1)
        return removed

    def _patiently(self, fn):
        """fn() until the sink takes it: transient errors are waited out (each failed attempt counted), others
        counted and raised."""
        try:
            return patiently(fn, self.retry, self.outage, on_failure=lambda _exc: dataflow_metrics.SINK_ERRORS.inc())
        except Exception:
            dataflow_metrics.SINK_ERRORS.inc()
            raise

    def close(self) -> None:
        self.sink.close()


class StoreSink(DynamicSink):
    def __init__(
        self,
        url: str,
        history: Optional[str] = None,
        window_retention_s: float = 48 * 3600,
        rollup_retention_days: int = 400,
        detail_min_daily_downloads: int = 0,
        retry: RetryPolicy = RetryPolicy(),
        lock_wait_s: float = 10.0,
    ):
        self.url = url
        self.history = history
        self.retry = retry
        self.lock_wait_s = lock_wait_s
        self.window_retention_s = window_retention_s
        self.rollup_retention_days = rollup_retention_days
        self.detail_min_daily_downloads = detail_min_daily_downloads

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(
            self.url,
            self.history,
            self.window_retention_s,
            self.rollup_retention_days,
            detail_min_daily_downloads=self.detail_min_daily_downloads,
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
