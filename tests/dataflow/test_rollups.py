"""Daily rollups through the real broker, dataflow and sink: exact across a UTC midnight, with out-of-order,
late (counted) and too-late (dropped) events, mirrors and null fields; retention pruning and its settings."""

from __future__ import annotations

import random
import threading
from datetime import UTC

from expected_rollups import expected_daily, expected_totals, make_event, stored_daily, stored_totals
from pulse_testing import poll_sink, publish

from pypi_pulse.sink.base import open_sink

MIDNIGHT = 1772323200  # 2026-03-01T00:00:00Z


def test_rollups_exact_across_midnight_with_late_and_dropped_events(broker, topic, sqlite_url):
    from pypi_pulse.broker import partition_count
    from pypi_pulse.dataflow.flow import FlowConfig
    from pypi_pulse.dataflow.runner import run_dataflow

    rng = random.Random(7)
    # phase 1: 23:30 → 00:05, shuffled (out of order within every partition); the newest second is 00:04:59
    phase1 = [make_event(rng, MIDNIGHT - 1800 + rng.random() * 2099) for _ in range(3000)]
    phase1.append(make_event(rng, MIDNIGHT + 299.5))
    rng.shuffle(phase1)
    # phase 2, once all of phase 1 is stored: late events within the 600 s horizon (counted, on both days) and
    # events older than the sealed minutes (23:55:00 after the watermark reached 00:05:00: dropped)
    late = [make_event(rng, MIDNIGHT - 240 + rng.random() * 360) for _ in range(400)]
    too_late = [make_event(rng, MIDNIGHT - 900 + rng.random() * 300) for _ in range(100)]
    stop: dict = {}
    # all of phase 1 is in Kafka before the dataflow starts: on a loaded machine a partition that the producer is
    # slow to fill could otherwise be seen idle (0.5 s) and its events judged against the others' watermark
    first = publish(broker.bootstrap, topic, phase1)

    def feed():
        try:
            poll_sink(sqlite_url, lambda db: db.windows(MIDNIGHT + 299, MIDNIGHT + 300))  # watermark passed 00:05:00
            second = publish(broker.bootstrap, topic, late + too_late)
            stop["offsets"] = {p: max(first.get(p, 0), second.get(p, 0)) for p in set(first) | set(second)}
        except BaseException as exc:  # never leave the dataflow running forever
            stop["error"] = exc
            stop["offsets"] = {}

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    n = partition_count(broker.bootstrap, topic)
    cfg = FlowConfig(broker.bootstrap, topic, topic + "-dlq", n, sqlite_url, lateness_s=600, idle_s=0.5)
    run_dataflow(cfg, epoch_s=1.0, stop_offsets=lambda: stop.get("offsets"))
    feeder.join(10)
    assert "error" not in stop, stop.get("error")

    counted = phase1 + late
    with open_sink(sqlite_url, readonly=True) as db:
        counters = db.stats().counters
        daily, totals = stored_daily(db), stored_totals(db)
    assert counters["dropped"] == len(too_late)
    assert counters["counted"] == len(counted)
    assert counters["late"] > 0  # the late events really arrived after their windows had been emitted
    want = expected_daily(counted)
    assert {k[0] for k in want} == {"2026-02-28", "2026-03-01"}
    assert daily == want
    assert totals == expected_totals(want)
    # the invariants the dashboard relies on, per project and day
    for (day, project, dim, _c), _n in want.items():
        if dim in ("installer", "python_major", "country", "system"):
            per_dim = sum(v for (d, p, dd, _), v in want.items() if (d, p, dd) == (day, project, dim))
            assert per_dim == want[(day, project, "overall", None)]
    assert all(want[(d, p, "with_mirrors", None)] >= want[(d, p, "overall", None)] for (d, p, _dim, _c) in want)


def _bucket(minute: int, counts: dict):
    from pypi_pulse.sink.model import RollupBucket

    return RollupBucket(minute, counts)


def test_prune_drops_old_windows_rollups_and_backfill_marks(sqlite_url):
    from pypi_pulse.sink.model import WindowRow
    from pypi_pulse.sink.queries import backfilled_days, day_range

    newest = MIDNIGHT + 10 * 86400
    with open_sink(sqlite_url) as db:
        db.write([WindowRow(newest - s, 1, 1, {"US": 1}, [("numpy", 1)]) for s in (0, 3599, 3600, 3601, 7200)], None)
        for i in range(12):  # 12 days of stream rollups ending on the newest day, and two backfilled days
            day = MIDNIGHT + (i - 1) * 86400
            db.write_buckets([_bucket(day, {(_iso(day), "numpy", "overall", None): 5})])
        db.backfill_day(_iso(MIDNIGHT - 5 * 86400), [("numpy", "overall", None, 3)], "test")
        db.backfill_day(_iso(MIDNIGHT + 5 * 86400), [("numpy", "overall", None, 4)], "test")

        removed = db.prune(3600, 7)
        assert removed["windows"] == 2  # older than newest - 3600 s: newest-3601 and newest-7200
        assert [w.start for w in db.windows(0, 2**40)] == [newest - 3600, newest - 3599, newest]
        assert day_range(db) == (_iso(MIDNIGHT + 4 * 86400), _iso(MIDNIGHT + 10 * 86400))  # newest day - 7 < kept
        assert set(backfilled_days(db)) == {_iso(MIDNIGHT + 5 * 86400)}
        kept = MIDNIGHT + 4 * 86400
        assert db.history.days() == [_iso(kept + i * 86400) for i in range(7)]  # pruned days' files go, whole
        streamed = [MIDNIGHT + (i - 1) * 86400 for i in range(12)]
        held = [d for d in streamed if any(s <= d < e for s, e in db.history.day_files(_iso(d)).covered())]
        assert held == [d for d in streamed if d >= kept]
        assert db.prune(3600, 7) == {"windows": 0, "daily": 0}  # idempotent


def _iso(t: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def test_retention_settings_reach_the_store_sink(monkeypatch, tmp_path):
    """PYPI_PULSE_* retention settings → FlowConfig → the StoreSink the dataflow writes (and prunes) through."""
    from pypi_pulse.assembly import flow_config
    from pypi_pulse.config import load_settings
    from pypi_pulse.dataflow.flow import build_flow
    from pypi_pulse.dataflow.outputs import StoreSink

    monkeypatch.setenv("PYPI_PULSE_WINDOW_RETENTION_HOURS", "3")
    monkeypatch.setenv("PYPI_PULSE_ROLLUP_RETENTION_DAYS", "30")
    s = load_settings(data_dir=tmp_path)
    cfg = flow_config(s, "127.0.0.1:9", 4)
    flow = build_flow(cfg, None)
    sinks = [st.sink for st in _steps(flow) if isinstance(getattr(st, "sink", None), StoreSink)]
    assert len(sinks) == 1
    part = sinks[0].build("store", 0, 1)
    try:
        assert (part.window_retention_s, part.rollup_retention_days) == (3 * 3600, 30)
    finally:
        part.close()


def _steps(flow):
    stack = list(flow.substeps)
    while stack:
        st = stack.pop()
        yield st
        stack.extend(getattr(st, "substeps", []))
