"""The pypi-pulse dataflow: Kafka batches → parse and pre-aggregate → a clock per shard → per-second merge → sink.

    kafka_in ─ parse ─┬─ dead_letters ─ dlq
                      └─ shard ─ clock × shards (windows, rollups, counters; writes its sealed blocks) ─ merge ─ store

Per-event work happens once, inside `parse`, on whichever worker reads the partition; only each shard's partial
aggregates cross to the worker holding that shard's clock (Bytewax routes by key), and only small per-second
partials and counters cross to the one `merge` step, so its cost follows the number of seconds, not of events.
"""

from __future__ import annotations

import functools
import pickle
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Optional

import bytewax.operators as op
import structlog
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic

from pypi_pulse.bounds import DEFAULT_FUTURE_TOLERANCE_S, DEFAULT_MAX_PROJECT_NAME, latest_second
from pypi_pulse.config import DEFAULT_BROKER_OUTAGE_LOG_S, DEFAULT_OFFSET_RESET_CONFIRM_S, DEFAULT_SHARDS
from pypi_pulse.dataflow.blocks import BlockOutput
from pypi_pulse.dataflow.clock import Clock, Flush
from pypi_pulse.dataflow.limits import ParseLimits, discard_future
from pypi_pulse.dataflow.merge import Merge, MergeLogic
from pypi_pulse.dataflow.outputs import DeadLetterSink, StoreSink
from pypi_pulse.dataflow.parse import parse_shards
from pypi_pulse.dataflow.partials import BatchPartial
from pypi_pulse.dataflow.shard_keys import shard_key
from pypi_pulse.dataflow.source import KafkaBatchSource, StopOffsets
from pypi_pulse.dataflow.spill import SpillStore
from pypi_pulse.metrics import dataflow_metrics
from pypi_pulse.sink.retry import RetryPolicy

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FlowConfig:
    bootstrap: str
    topic: str
    dlq_topic: str
    n_partitions: int
    sink_url: str
    history: Optional[str] = None  # the rollup history's location (sink/history.py); None: beside a SQLite sink
    shards: int = DEFAULT_SHARDS  # clocks keyed by a stable hash of the project (dataflow/partials.py)
    lateness_s: float = 600.0
    out_of_order_s: float = 0.0
    idle_s: float = 2.0
    window_retention_s: float = 48 * 3600
    rollup_retention_days: int = 400
    detail_min_daily_downloads: int = 0  # the CLI passes the setting (default 1000); 0 keeps every row
    batch_size: int = 20_000
    drain_idle_s: Optional[float] = None  # stop once every partition has been at its end this long
    hold_blocks_events: int = 0  # batch runs without recovery: a day's sealed blocks wait for each other (Clock)
    sink_retry: RetryPolicy = RetryPolicy()  # how a locked or unreachable sink is waited out (sink/retry.py)
    sink_lock_wait_s: float = 10.0  # SQLite: how long one write waits for another's lock before it is retried
    broker_outage_log_s: float = DEFAULT_BROKER_OUTAGE_LOG_S  # kafka.broker_unavailable repeated this often
    offset_reset_confirm_s: float = DEFAULT_OFFSET_RESET_CONFIRM_S  # dataflow/source.py
    future_tolerance_s: float = DEFAULT_FUTURE_TOLERANCE_S  # pypi_pulse/bounds.py
    max_project_chars: int = DEFAULT_MAX_PROJECT_NAME


class ClockLogic(StatefulLogic[BatchPartial, tuple[int, Flush], Optional[bytes]]):
    """One shard's clock. It learns its shard from its first partial (Bytewax's builder is not told the key), and
    keeps it in its snapshot with the clock, so that a resumed clock finds its own spilled state. Its sealed blocks
    are written here, on its own worker (dataflow/blocks.py): only windows and counters go on to the merge."""

    def __init__(self, clock: Clock, cfg: FlowConfig, snapshots: bool, spill_dir: Optional[Path], shard=None):
        self.clock, self.cfg, self.snapshots, self.spill_dir = clock, cfg, snapshots, spill_dir
        self.shard: Optional[int] = shard
        self.part: Optional[tuple[int, int]] = None  # (shard, shards) of a sharded clock: its part of each block
        self.spill: Optional[SpillStore] = None
        self.blocks = BlockOutput(
            cfg.sink_url,
            cfg.history,
            cfg.window_retention_s,
            cfg.rollup_retention_days,
            cfg.sink_retry,
            cfg.sink_lock_wait_s,
        )
        if shard is not None:
            self._set_up(shard)

    def _set_up(self, shard: int) -> None:
        self.shard = shard
        self.part = (shard, self.cfg.shards) if self.cfg.shards > 1 else None
        if self.snapshots and self.spill_dir is not None:
            self.spill = SpillStore(self.spill_dir / f"shard-{shard}" if self.part else self.spill_dir)

    @staticmethod
    def resume(blob: bytes, cfg: FlowConfig, snapshots: bool, spill_dir: Optional[Path]) -> ClockLogic:
        shard, state = pickle.loads(blob)
        logic = ClockLogic(Clock.__new__(Clock), cfg, snapshots, spill_dir, shard)
        logic.clock = Clock.restore(state, logic.spill)
        if discard_future(logic.clock, latest_second(time.time(), cfg.future_tolerance_s)):
            log.warning(
                "dataflow.future_state_discarded",
                watermark=logic.clock.watermark,
                sealed_before=logic.clock.sealed_before,
            )
        return logic

    def on_item(self, value: BatchPartial):
        if self.shard is None:
            self._set_up(value.shard)
        self.clock.add(value)
        return self._flush()

    def on_notify(self):
        return self._flush()

    def _flush(self, force: bool = False):
        now = time.time()
        out = self.clock.flush(now, force=force)
        if out is not None:
            for block in out.sealed:
                self.blocks.submit(block, self.part)
            out.sealed = []
        written = self.blocks.written(wait=force)  # at the end of input, every block before the last report
        if written:  # a report at once, with `blocks_before` past what was just written
            self.clock.release(written)
            out = Flush(out.windows if out else [], [], self.clock.stats(now))
        dataflow_metrics.ROLLUP_PENDING.set(len(self.clock.unapplied))
        return ([(self.shard, out)] if out else []), StatefulLogic.RETAIN

    def on_eof(self):
        return self._flush(force=True)

    def notify_at(self):
        from datetime import datetime, timedelta

        return datetime.now(UTC) + timedelta(seconds=self.clock.emit_every_s)

    def snapshot(self) -> Optional[bytes]:
        # Bytewax asks every epoch even without recovery; pickling the whole clock then buys nothing
        if not self.snapshots or self.shard is None:
            return None
        blob = self.clock.snapshot(self.spill)
        dataflow_metrics.SNAPSHOT_BYTES.set(len(blob))
        if self.spill is not None:
            dataflow_metrics.SPILLED_BYTES.set(self.spill.bytes_on_disk)
        return pickle.dumps((self.shard, blob), protocol=pickle.HIGHEST_PROTOCOL)


def build_flow(
    cfg: FlowConfig,
    stop_offsets: Optional[StopOffsets] = None,
    snapshots: bool = True,
    spill_dir: Optional[Path] = None,
) -> Dataflow:
    """`snapshots=False` when the run has no recovery store (batch runs, tests): the clock is then never pickled.
    `spill_dir`, beside the recovery store: where snapshots leave the clock's packed state (dataflow/spill.py)."""
    flow = Dataflow("pypi_pulse")
    raw = op.input(
        "kafka_in",
        flow,
        KafkaBatchSource(
            cfg.bootstrap,
            cfg.topic,
            cfg.n_partitions,
            batch_size=cfg.batch_size,
            stop_offsets=stop_offsets,
            drain_idle_s=cfg.drain_idle_s,
            outage_log_s=cfg.broker_outage_log_s,
            reset_confirm_s=cfg.offset_reset_confirm_s,
        ),
    )
    limits = ParseLimits(cfg.future_tolerance_s, cfg.max_project_chars)
    parsed = op.map("parse", raw, functools.partial(parse_shards, shards=cfg.shards, limits=limits))
    dead = op.flat_map("dead_letters", parsed, lambda parts: parts[0].dead)
    op.output("dlq", dead, DeadLetterSink(cfg.bootstrap, cfg.dlq_topic))
    # each shard's partial to the worker that holds the shard's clock (Bytewax routes by key: dataflow/shard_keys.py)
    keyed = op.flat_map("shard", parsed, lambda parts: [(shard_key(p.shard), p) for p in parts])

    def builder(resume: Optional[bytes]) -> ClockLogic:
        if resume is not None:
            return ClockLogic.resume(resume, cfg, snapshots, spill_dir)
        clock = Clock(
            cfg.lateness_s,
            cfg.out_of_order_s,
            cfg.idle_s,
            log_open_minutes=snapshots,
            hold_blocks_events=0 if snapshots else cfg.hold_blocks_events,
        )
        return ClockLogic(clock, cfg, snapshots, spill_dir)

    # only windows and counters meet: each shard's sealed blocks were written by the clock step, where they were sealed
    shard_flushes = op.map("to_merge", op.stateful("clock", keyed, builder), lambda kv: ("all", kv[1]))
    flushes = op.stateful(
        "merge",
        shard_flushes,
        lambda resume: MergeLogic(resume or Merge(cfg.shards, cfg.out_of_order_s, cfg.lateness_s)),
    )
    op.output(
        "store",
        flushes,
        StoreSink(
            cfg.sink_url,
            cfg.history,
            cfg.window_retention_s,
            cfg.rollup_retention_days,
            cfg.detail_min_daily_downloads,
            retry=cfg.sink_retry,
            lock_wait_s=cfg.sink_lock_wait_s,
        ),
    )
    return flow
