"""`pypi-pulse up` checks every port it will use before it starts anything: with one of them taken it names the
port and the flag that moves it, exits 2, and leaves nothing running, bound or written."""

from __future__ import annotations

import socket

import pytest
from pulse_testing import marked_processes, port_is_free, run_pulse

from pypi_pulse.broker import free_port


def metrics_base() -> int:
    """A free port M with M + 1 and M + 2 free too (up's producer and dataflow metrics go there)."""
    for _ in range(200):
        m = free_port()
        if m + 2 < 65536 and port_is_free(m + 1) and port_is_free(m + 2):
            return m
    raise AssertionError("no three consecutive free ports")


@pytest.mark.parametrize(
    "taken, flag",
    [
        ("dashboard", "--port"),
        ("metrics", "--metrics-port"),
        ("producer metrics", "--metrics-port (it uses that port + 1)"),
        ("dataflow metrics", "--metrics-port (it uses that port + 2)"),
        ("broker", "--broker-port"),
    ],
)
def test_up_with_a_port_taken_names_it_and_starts_nothing(taken, flag, tmp_path):
    m = metrics_base()
    ports = {
        "dashboard": free_port(),
        "metrics": m,
        "producer metrics": m + 1,
        "dataflow metrics": m + 2,
        "broker": free_port(),
    }
    data = tmp_path / "data"
    with socket.socket() as holder:  # another instance (or anything) listening there
        holder.bind(("127.0.0.1", ports[taken]))
        holder.listen()
        proc, mark = run_pulse(
            "up",
            "--data-dir",
            str(data),
            "--port",
            str(ports["dashboard"]),
            "--metrics-port",
            str(m),
            "--broker-port",
            str(ports["broker"]),
            "--rate",
            "10",
        )
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"port {ports[taken]} " in lines[0] and flag in lines[0] and "already in use" in lines[0], lines[0]
        assert not marked_processes(mark), "up left a process running"
    assert all(port_is_free(p) for p in ports.values()), "a port is still bound"
    assert not data.exists(), "up wrote its data directory before refusing"


def test_up_refuses_two_of_its_listeners_on_one_port(tmp_path):
    m = metrics_base()
    proc, mark = run_pulse(
        "up", "--data-dir", str(tmp_path / "data"), "--port", str(m + 1), "--metrics-port", str(m), "--broker-port", "0"
    )
    assert proc.returncode == 2
    (line,) = [line for line in proc.stderr.splitlines() if line.strip()]
    assert f"port {m + 1} would be used twice" in line and "--port" in line and "--metrics-port" in line, line
    assert not marked_processes(mark) and not (tmp_path / "data").exists()
