"""In a live dataflow, a late event updates its window's row; one past the lateness horizon is dropped and counted."""

from __future__ import annotations

import signal
import subprocess

from dataflow_testing import live_dataflow
from pulse_testing import poll_sink, publish

from pypi_pulse.sink.base import open_sink

T0 = 1795219200


def row(sec, project="numpy", cc="US"):
    return {"timestamp": sec, "project": project, "country_code": cc}


def test_late_event_updates_its_window_and_too_late_event_is_dropped(tmp_path, broker, topic):
    sink = f"sqlite:///{tmp_path / 'late.db'}"
    proc = live_dataflow(broker.bootstrap, topic, sink, tmp_path / "d", lateness_s=60, PYPI_PULSE_IDLE_SECONDS="0.5")
    try:
        publish(broker.bootstrap, topic, [row(T0 + s + 0.5) for s in range(300)])
        poll_sink(sink, lambda db: len(db.windows(T0, T0 + 300)) == 300)
        first = {w.start: w for w in open_sink(sink, readonly=True).windows(T0, T0 + 300)}
        assert first[T0 + 280].downloads == 1

        publish(
            broker.bootstrap,
            topic,
            [row(T0 + 280.2, "Requests", "FR"), row(T0 + 280.9, "requests", None), row(T0 + 3.1, "numpy", "US")],
        )
        stats = poll_sink(sink, lambda db: (s := db.stats()) and s.counters.get("consumed") == 303 and s)
        updated = poll_sink(
            sink, lambda db: next((w for w in db.windows(T0 + 280, T0 + 281) if w.downloads == 3), None)
        )
        assert updated.countries == {"US": 1, "FR": 1, "ZZ": 1}
        assert updated.top == [("requests", 2), ("numpy", 1)]
        assert updated.unique_packages == 2
        assert stats.counters["late"] == 2 and stats.counters["dropped"] == 1
        assert open_sink(sink, readonly=True).windows(T0 + 3, T0 + 4)[0].downloads == 1  # untouched
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
