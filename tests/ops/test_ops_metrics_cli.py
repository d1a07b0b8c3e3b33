"""The metrics commands and flags, run as users run them: errors are one fixable line and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
import requests
from prom_helpers import need, poll

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        command_lines.cli(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, COLUMNS="400"),
    )  # no wrapping


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _one_line_error(r: subprocess.CompletedProcess, hint: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and hint in lines[0], r.stderr


def test_metrics_on_a_taken_port_says_which_flag_to_change(busy_port, tmp_path):
    _one_line_error(cli("metrics", "--sink", f"sqlite:///{tmp_path / 'p.db'}", "--port", str(busy_port)), "--port")


def test_metrics_with_a_bad_sink_url_fails_fast(tmp_path):
    _one_line_error(cli("metrics", "--sink", "mysql://nope/db"), "--sink")


@pytest.mark.parametrize("command", ["produce", "dataflow"])
def test_component_metrics_port_taken_is_a_user_error(command, busy_port, tmp_path):
    r = cli(
        command, "--bootstrap-servers", "127.0.0.1:1", "--metrics-port", str(busy_port), "--data-dir", str(tmp_path)
    )
    _one_line_error(r, "--metrics-port")


@pytest.mark.prometheus
def test_exporter_on_an_empty_sink_reports_it_readable_and_lints_clean(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        command_lines.cli("metrics", "--sink", f"sqlite:///{tmp_path / 'e.db'}", "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        text: list[str] = []

        def served():
            if proc.poll() is not None:
                pytest.fail(f"exporter exited with {proc.returncode}: {proc.stderr.read().decode()}")
            text[:] = [requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text]
            return None

        poll(served, 30, "the exporter to serve /metrics")
        body = text[0]
        assert "pypi_pulse_sink_up 1.0" in body
        assert "\npypi_pulse_downloads_per_second " not in body  # no window yet: no value rather than a made-up 0
        assert "process_resident_memory_bytes" in body
        check = subprocess.run([need("promtool"), "check", "metrics"], input=body, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proc.terminate()
        proc.wait(10)
