"""A dataflow killed mid-stream (SIGKILL) and restarted resumes from its recovery snapshot: exact, no double count."""

from __future__ import annotations

from dataflow_testing import assert_exact, consumed, crash, drain, spread_events, start_dataflow, wait_until
from pulse_testing import expected_windows, publish, stored_windows

from pypi_pulse.dataflow.runner import SPILL_DIR
from pypi_pulse.producer.synthetic import SyntheticSource
from pypi_pulse.sink.base import open_sink

T0 = 1795219100


def test_killed_dataflow_resumes_exactly(tmp_path, broker, topic):
    src = SyntheticSource(seed=21)
    n = 240_000
    rows = src.events([T0 + i * (300 / n) for i in range(n)])  # 5 minutes of event time
    publish(broker.bootstrap, topic, rows)
    sink = f"sqlite:///{tmp_path / 'rec.db'}"
    log = tmp_path / "dataflow.log"

    first = start_dataflow(broker.bootstrap, topic, sink, tmp_path / "data", log)
    spill = tmp_path / "data" / "recovery" / SPILL_DIR
    try:
        # killed once snapshots refer to packed rollup minutes written beside the recovery store (dataflow/spill.py)
        wait_until(
            f"{n // 4} events consumed and a spilled rollup minute",
            lambda: consumed(sink) >= n // 4 and list(spill.rglob("*.seg")),  # each shard spills to spill/shard-K
            300,
            watch=[first],
            describe=lambda: f"consumed: {consumed(sink)}",
        )
        crash(first)
        assert consumed(sink) < n, "killed too late to prove anything: the run had already finished"
    finally:
        first.reap()
    drain(broker.bootstrap, topic, sink, tmp_path / "data", log, timeout=600)

    with open_sink(sink, readonly=True) as db:
        counters = db.stats().counters
    assert counters["consumed"] == n  # restored counters + the rest: nothing read twice
    assert counters["counted"] == n
    assert stored_windows(sink) == expected_windows(rows)


def test_a_drained_run_resumed_on_new_events_counts_them_all(tmp_path, broker, topic):
    """`--until-drained` with recovery ends with every partition read to its end and everything sealed; a run
    resumed from that store on events published since counts every one of them, not drop them as too late."""
    first_events = spread_events(31, T0, 120, 3000)
    later_events = spread_events(32, T0 + 1800, 120, 3000)  # half an hour on: blocks the first run never had
    sink = f"sqlite:///{tmp_path / 'rec.db'}"
    log = tmp_path / "dataflow.log"
    for events in (first_events, later_events):
        publish(broker.bootstrap, topic, events)
        drain(broker.bootstrap, topic, sink, tmp_path / "data", log, timeout=300)
    assert_exact(sink, first_events + later_events)
