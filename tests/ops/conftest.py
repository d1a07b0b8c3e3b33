"""Operations fixtures: the real Prometheus server (Debian `prometheus`) on a loopback port."""

from __future__ import annotations

import subprocess

import pytest
import requests
from prom_helpers import Prometheus, need, poll

from pypi_pulse.broker import free_port


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus on a free loopback port, scraping `targets` ({job: "host:port"}) every second."""
    binary = need("prometheus")
    started: list[Prometheus] = []

    def start(targets: dict[str, str], rule_files: tuple = ()) -> Prometheus:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "  evaluation_interval: 1s"]
        if rule_files:
            lines += ["rule_files:"] + [f"  - {f}" for f in rule_files]
        lines.append("scrape_configs:")
        for job, target in targets.items():
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: ['{target}']"]
        cfg.write_text("\n".join(lines) + "\n")
        log = tmp_path / "prometheus.log"
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        p = Prometheus(f"http://127.0.0.1:{port}", proc, log)
        started.append(p)

        def ready():
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}: {log.read_text()[-2000:]}")
            return None if requests.get(f"{p.url}/-/ready", timeout=2).status_code == 200 else "not ready"

        poll(ready, 30, "prometheus to be ready")
        return p

    yield start
    for p in started:
        p.proc.terminate()
        try:
            p.proc.wait(10)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(5)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_sink_url(request, tmp_path):
    """An empty sink of each backend; PostgreSQL in a schema of its own, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pulse.db'}"
        return
    from pulse_testing import postgres_schema

    with postgres_schema(request.getfixturevalue("postgres_url"), "pulse_ops") as url:
        yield url
