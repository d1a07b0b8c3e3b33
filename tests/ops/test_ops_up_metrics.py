"""`pypi-pulse up` gives every component its metrics endpoint, prints them, and each serves live figures."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests
from prom_helpers import poll
from prometheus_client.parser import text_string_to_metric_families

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port


def _samples(url: str) -> dict[str, float]:
    """Sample name → value, summed over label sets."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=3).text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def test_up_serves_producer_dataflow_and_exporter_metrics(tmp_path):
    exporter, producer, dataflow, dashboard = (free_port() for _ in range(4))
    env = dict(
        os.environ,
        PYPI_PULSE_BROKER_PORT="0",
        PYPI_PULSE_METRICS_PORT=str(exporter),
        PYPI_PULSE_PRODUCER_METRICS_PORT=str(producer),
        PYPI_PULSE_DATAFLOW_METRICS_PORT=str(dataflow),
        COLUMNS="300",
    )
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        command_lines.up(tmp_path / "data", "--rate", "300", "--seed", "3", "--port", str(dashboard)),
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    try:
        urls = {
            name: f"http://127.0.0.1:{port}/metrics"
            for name, port in (("exporter", exporter), ("producer", producer), ("dataflow", dataflow))
        }
        want = {
            "producer": ("pypi_pulse_producer_events_sent_total",),
            "dataflow": (
                "pypi_pulse_dataflow_events_consumed_total",
                "pypi_pulse_dataflow_windows_closed_total",
                "pypi_pulse_sink_write_duration_seconds_count",
            ),
            "exporter": ("pypi_pulse_pipeline_events_counted_total", "pypi_pulse_downloads_per_second"),
        }

        def live():
            if proc.poll() is not None:
                pytest.fail(f"up exited with {proc.returncode}: {log.read_text()[-3000:]}")
            missing = []
            for name, metrics in want.items():
                got = _samples(urls[name])
                missing += [f"{name}:{m}" for m in metrics if got.get(m, 0) <= 0]
                if got.get("process_resident_memory_bytes", 0) <= 0:
                    missing.append(f"{name}:process_resident_memory_bytes")
            return ", ".join(missing) or None

        poll(live, 120, "every component to serve live metrics")
        printed = log.read_text()
        for url in urls.values():
            assert url in printed, f"up did not print {url}:\n{printed}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
