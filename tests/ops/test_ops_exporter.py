"""The exporter's figures, read from a sink the real dataflow wrote, on both backends (no Prometheus needed)."""

from __future__ import annotations

import functools
import random
import time

from ops_scenario import LATENESS_S, SPAN_S, expected, make_events
from prometheus_client import generate_latest

from pypi_pulse.metrics.reasons import REASONS
from pypi_pulse.metrics.sink_collector import build_registry
from pypi_pulse.sink.base import open_sink


def test_exporter_reports_what_the_dataflow_stored(broker, topic, any_sink_url, flow_helpers, tmp_path):
    history = tmp_path / "history"  # the sink's rollups, the test's own on either backend
    good, lines, bad = make_events(random.Random(11))
    end_offsets = flow_helpers.publish(broker.bootstrap, topic, lines)
    flow_helpers.run_flow(
        broker.bootstrap,
        topic,
        any_sink_url,
        end_offsets=end_offsets,
        history=str(history),
        lateness_s=LATENESS_S,
        out_of_order_s=0.0,
    )
    want = expected(good)

    opener = functools.partial(open_sink, history=history)
    registry, collector = build_registry(any_sink_url, span_s=SPAN_S, cache_s=0, opener=opener)
    try:
        value = registry.get_sample_value
        assert value("pypi_pulse_sink_up") == 1.0
        assert value("pypi_pulse_window_last_start_timestamp_seconds") == want["last"]
        assert value("pypi_pulse_downloads_per_second") == want["rate"]
        assert value("pypi_pulse_unique_packages_per_second") == want["unique"]
        assert value("pypi_pulse_downloads_today") == want["today"]
        countries = {
            s.labels["country"]: s.value
            for m in registry.collect()
            if m.name == "pypi_pulse_country_downloads_per_second"
            for s in m.samples
        }
        assert countries == want["countries"]
        top = {
            f"{s.labels['rank']}. {s.labels['project']}": s.value
            for m in registry.collect()
            if m.name == "pypi_pulse_top_package_downloads_per_second"
            for s in m.samples
        }
        assert top == want["top"]
        assert value("pypi_pulse_pipeline_events_consumed_total") == len(lines)
        assert value("pypi_pulse_pipeline_events_counted_total") == len(good)
        assert value("pypi_pulse_pipeline_events_dropped_total") == 0
        for reason in REASONS:
            assert value("pypi_pulse_pipeline_events_dead_lettered_total", {"reason": reason}) == bad.get(reason, 0), (
                reason
            )
        for p, off in end_offsets.items():
            assert value("pypi_pulse_pipeline_partition_next_offset", {"partition": str(p)}) == off
        text = generate_latest(registry).decode()
        assert text.count("pypi_pulse_country_downloads_per_second{") == len(want["countries"])
    finally:
        collector.close()


def test_an_unreadable_sink_is_reported_not_raised(tmp_path):
    registry, collector = build_registry(f"sqlite:///{tmp_path / 'missing.db'}", cache_s=0)
    assert registry.get_sample_value("pypi_pulse_sink_up") == 0.0
    since = registry.get_sample_value("pypi_pulse_sink_unavailable_since_seconds")
    assert 0 < since <= time.time()
    assert registry.get_sample_value("pypi_pulse_sink_unavailable_since_seconds") == since  # since the first failure
    assert registry.get_sample_value("pypi_pulse_downloads_per_second") is None
    collector.close()
