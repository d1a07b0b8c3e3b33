"""A real Prometheus scrapes a running pipeline; its query API must show what the pipeline was given.

Producer (real Publisher and file replay, in this process, serving its /metrics) → real broker → `pypi-pulse
dataflow --metrics-port` (a child process) → SQLite sink → `pypi-pulse metrics` (a child process). Expected values
are computed from the events we wrote, independently of the pipeline.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from ops_scenario import LATENESS_S, SPAN_S, expected, make_events
from prom_helpers import DEPLOY, poll

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port
from pypi_pulse.metrics.reasons import REASONS

pytestmark = pytest.mark.prometheus


PRODUCER = """
import json, sys, threading
from pypi_pulse import logs
from pypi_pulse.metrics.endpoint import serve
from pypi_pulse.producer.publisher import Publisher
from pypi_pulse.producer.replay import replay_file
from pathlib import Path
bootstrap, topic, path, port = sys.argv[1:]
logs.setup("warning")
serve("127.0.0.1", int(port))
pub = Publisher(bootstrap, topic, topic + "-dlq")
s = replay_file(pub, Path(path), None, False, threading.Event(), show_progress=False)
pub.flush()
print(json.dumps({"sent": s.sent, "end_offsets": pub.end_offsets}), flush=True)
sys.stdin.read()
"""


def _child(argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:pypi_pulse|process)_[a-z0-9_]+)\b", expr))


def test_prometheus_sees_what_the_pipeline_produced(broker, topic, tmp_path, prometheus):
    good, lines, bad = make_events(random.Random(6))
    want = expected(good)
    assert want["today"] > 0 and want["rate"] > 0 and len(want["top"]) == 10  # the scenario exercises every figure
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    sink_url = f"sqlite:///{tmp_path / 'pulse.db'}"

    # producer: its own process (so that no other test's objects show in its metrics), the real Publisher and
    # file replay, serving its /metrics until we close its stdin
    producer_port = free_port()
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, broker.bootstrap, topic, str(path), str(producer_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "producer.log", "wb"),
    )
    report = producer.stdout.readline()
    assert report, f"producer failed: {(tmp_path / 'producer.log').read_text()[-3000:]}"
    report = json.loads(report)
    assert report["sent"] == len(lines)
    acked = {int(p): o for p, o in report["end_offsets"].items()}

    env = dict(
        os.environ,
        PYPI_PULSE_OUT_OF_ORDER_SECONDS="0",
        PYPI_PULSE_DLQ_TOPIC=topic + "-dlq",
        PYPI_PULSE_DATA_DIR=str(tmp_path / "data"),
        PYPI_PULSE_LOG_LEVEL="warning",
    )
    dataflow_port, exporter_port = free_port(), free_port()
    dataflow = _child(
        command_lines.dataflow(
            broker.bootstrap,
            topic,
            sink_url,
            tmp_path / "data",
            "--no-recovery",
            "--lateness-seconds",
            str(LATENESS_S),
            "--metrics-port",
            str(dataflow_port),
        ),
        tmp_path / "dataflow.log",
        env,
    )
    exporter = _child(
        command_lines.cli("metrics", "--sink", sink_url, "--port", str(exporter_port), "--span-seconds", str(SPAN_S)),
        tmp_path / "exporter.log",
        env,
    )
    try:
        prom = prometheus(
            {
                "pypi-pulse-producer": f"127.0.0.1:{producer_port}",
                "pypi-pulse-dataflow": f"127.0.0.1:{dataflow_port}",
                "pypi-pulse-exporter": f"127.0.0.1:{exporter_port}",
            },
            rule_files=(str(DEPLOY / "prometheus" / "alerts.yml"),),
        )

        def alive():
            for name, proc in (("dataflow", dataflow), ("exporter", exporter)):
                if proc.poll() is not None:
                    pytest.fail(
                        f"{name} exited with {proc.returncode}: {(tmp_path / (name + '.log')).read_text()[-3000:]}"
                    )

        def pipeline_done():
            alive()
            last = prom.values("pypi_pulse_window_last_start_timestamp_seconds")
            if last.get("") != want["last"]:
                return f"newest window {last}, want {want['last']}"
            today = prom.values("pypi_pulse_downloads_today")
            if today.get("") != want["today"]:
                return f"downloads today {today}, want {want['today']}"
            return None

        poll(pipeline_done, 120, "the dataflow to close the last window and seal the rollups")

        total = len(lines)
        counted = len(good)
        checks = {
            # download data, from the exporter
            "pypi_pulse_downloads_per_second": ({"": want["rate"]}, ""),
            "pypi_pulse_unique_packages_per_second": ({"": want["unique"]}, ""),
            "pypi_pulse_downloads_today": ({"": float(want["today"])}, ""),
            "pypi_pulse_country_downloads_per_second": (want["countries"], "country"),
            # the dataflow's stored counters, from the exporter
            "pypi_pulse_pipeline_events_consumed_total": ({"": float(total)}, ""),
            "pypi_pulse_pipeline_events_counted_total": ({"": float(counted)}, ""),
            "pypi_pulse_pipeline_events_dropped_total": ({"": 0.0}, ""),
            "pypi_pulse_pipeline_events_dead_lettered_total": ({r: float(bad.get(r, 0)) for r in REASONS}, "reason"),
            "sum(pypi_pulse_producer_events_dead_lettered_total)": ({"": 0.0}, ""),
            "pypi_pulse_pipeline_partition_next_offset": ({str(p): float(o) for p, o in acked.items()}, "partition"),
            # the producer process
            "pypi_pulse_producer_events_read_total": ({"": float(total)}, ""),
            "pypi_pulse_producer_events_sent_total": ({"": float(total)}, ""),
            "pypi_pulse_producer_events_failed_total": ({"": 0.0}, ""),
            "pypi_pulse_producer_acked_end_offset": ({str(p): float(o) for p, o in acked.items()}, "partition"),
            # the dataflow process
            "sum by (partition) (pypi_pulse_dataflow_events_consumed_total)": (
                {str(p): float(o) for p, o in acked.items()},
                "partition",
            ),
            "pypi_pulse_dataflow_partition_next_offset": ({str(p): float(o) for p, o in acked.items()}, "partition"),
            "pypi_pulse_dataflow_consumer_lag_messages": ({str(p): 0.0 for p in acked}, "partition"),
            "pypi_pulse_dataflow_windows_closed_total": ({"": float(want["seconds"])}, ""),
            "pypi_pulse_dataflow_window_close_delay_seconds_count": ({"": float(want["seconds"])}, ""),
            "pypi_pulse_sink_write_errors_total": ({"": 0.0}, ""),
            # exact lag from the recording rule in deploy/prometheus/alerts.yml
            "pypi_pulse:consumer_lag:messages": ({str(p): 0.0 for p in acked}, "partition"),
            "pypi_pulse_sink_up": ({"": 1.0}, ""),
        }

        def all_match():
            alive()
            wrong = []
            for expr, (exp, by) in checks.items():
                got = prom.values(expr, by)
                if got.keys() != exp.keys() or any(abs(got[k] - exp[k]) > 1e-9 for k in exp):
                    wrong.append(f"{expr}: got {got}, want {exp}")
            return "; ".join(wrong) or None

        poll(all_match, 60, "every series to match the events sent")

        top = {
            f"{s['metric']['rank']}. {s['metric']['project']}": float(s["value"][1])
            for s in prom.query("pypi_pulse_top_package_downloads_per_second")
        }
        assert top == want["top"]
        assert prom.values("pypi_pulse_sink_write_duration_seconds_count")[""] >= 1
        for job in ("pypi-pulse-producer", "pypi-pulse-dataflow", "pypi-pulse-exporter"):
            assert prom.values(f'process_resident_memory_bytes{{job="{job}"}}')[""] > 1e6
            assert prom.values(f'up{{job="{job}"}}')[""] == 1.0
        assert (
            prom.query(
                'ALERTS{alertname=~"PyPIPulseSinkErrors|PyPIPulseDeadLetterRateHigh|PyPIPulseConsumerLagGrowing"}'
            )
            == []
        )

        # the Grafana dashboard: every query parses in this Prometheus and names only metrics it scraped from us
        dashboard = json.loads((DEPLOY / "grafana" / "pypi-pulse.json").read_text())
        scraped = prom.names()
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                names = _metric_names_in(expr)
                assert names, f"panel {panel['title']!r}: {expr!r} names none of our metrics"
                assert names <= scraped, f"panel {panel['title']!r} uses {sorted(names - scraped)}, not exported"
                prom.query(expr.replace("$__rate_interval", "1m"))  # raises on a syntax error

        # the exposition of every component passes promtool's lint
        promtool = subprocess.run
        for port in (producer_port, dataflow_port, exporter_port):
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            check = promtool(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            assert check.returncode == 0, f"promtool check metrics on :{port}: {check.stdout}{check.stderr}"
    finally:
        _stop(exporter)
        _stop(dataflow)
        producer.stdin.close()
        _stop(producer)
