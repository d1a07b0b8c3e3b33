"""A shard's sealed blocks are merged and written off its worker: windows keep leaving while a block's write waits,
and no report says the block has left until its file is in the history."""

from __future__ import annotations

import sqlite3
import time

import duckdb
import orjson

from pypi_pulse.dataflow.clock import Clock
from pypi_pulse.dataflow.flow import ClockLogic, FlowConfig
from pypi_pulse.dataflow.parse import parse_batch
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.retry import RetryPolicy

T0 = 1795219200  # 2026-11-21T00:00:00Z


def _batch(seconds: range, offset: int) -> RawBatch:
    rows = [orjson.dumps({"timestamp": T0 + s, "project": f"p{s % 7}", "country_code": "DE"}) for s in seconds]
    return RawBatch(0, 1, rows, offset, False, wall=time.time())


def _reports(out) -> list:
    emitted, _ = out
    return [flush for _shard, flush in emitted]


def test_windows_keep_leaving_while_a_sealed_block_waits_for_a_locked_sink(tmp_path):
    url = f"sqlite:///{tmp_path / 'pulse.db'}"
    open_sink(url).close()  # the schema, so that the test can hold the database's lock
    cfg = FlowConfig(
        "127.0.0.1:1", "t", "t-dlq", 1, url, shards=1, lateness_s=60, sink_retry=RetryPolicy(0.05, 0.05, 30.0)
    )
    logic = ClockLogic(Clock(60, 0, 2, emit_every_s=0), cfg, snapshots=False, spill_dir=None)
    locker = sqlite3.connect(tmp_path / "pulse.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the block's trending rows cannot be written until the test lets go
    try:
        (first,) = _reports(logic.on_item(parse_batch(_batch(range(0, 700), 0))))  # seals the block [T0, T0 + 600)
        assert first.stats.blocks_before == T0
        (later,) = _reports(logic.on_item(parse_batch(_batch(range(700, 710), 700))))
        assert [w.start for w in later.windows] == list(range(T0 + 699, T0 + 709))  # the worker goes on
        assert later.stats.blocks_before == T0  # the block is not written yet, so it has not left
        assert list(logic.clock.unapplied) == [T0]
    finally:
        locker.rollback()
    deadline, reports = time.monotonic() + 30, []
    while not reports and time.monotonic() < deadline:
        reports = [r for r in _reports(logic.on_notify()) if r.stats.blocks_before == T0 + 600]
        time.sleep(0.01)
    assert reports, "no report said the block had left within 30 s of the sink's lock going"
    assert not logic.clock.unapplied
    files = sorted(str(p) for p in (tmp_path / "history").rglob("*.parquet"))
    assert len(files) == 1
    ((total,),) = duckdb.sql(f"select sum(downloads) from '{files[0]}' where dimension = 'overall'").fetchall()
    assert total == 600
