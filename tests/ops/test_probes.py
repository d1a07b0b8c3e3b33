"""`/healthz` and `/readyz`, black-box, on the real commands: `serve` and `metrics` are ready while their sink
answers and answer 503 with the reason (JSON, no session) when it does not (a SQLite file removed, a PostgreSQL
server that stops answering, through a TCP relay the test cuts); the producer's and the dataflow's metrics ports
say they are alive while their main loop turns, idle or not, and 503 once it stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))

from dashboard_testing import fill  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402
from pypi_pulse.broker import free_port  # noqa: E402
from pypi_pulse.metrics.endpoint import serve  # noqa: E402
from pypi_pulse.metrics.liveness import Heartbeat  # noqa: E402
from pypi_pulse.sink.base import open_sink  # noqa: E402

STALE_S = 2.0  # healthz_stale_seconds for the producer and dataflow under test


class Command:
    """A `pypi-pulse` command (pypi_pulse/command_lines.py) running in the background, its output in a file; stopped
    with SIGTERM."""

    def __init__(self, argv: list[str], log: Path, **env: str):
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, **env})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def probe(url: str, want: int, timeout: float = 30.0, cmd: Command | None = None) -> dict:
    """Poll `url` until it answers `want`; returns its JSON body. Fails at once if `cmd` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert cmd is None or cmd.proc.poll() is None, f"{cmd.proc.args[3]} exited: {cmd.output()[-3000:]}"
        try:
            r = requests.get(url, timeout=5)
            last = (r.status_code, r.text[:300])
            if r.status_code == want:
                assert r.headers["Content-Type"].startswith("application/json")
                return r.json()
        except requests.ConnectionError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {want} within {timeout} s; last: {last}")


@pytest.fixture
def filled(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'pulse.db'}"
    fill(url)
    return url


def test_serve_probes_need_no_session_and_readyz_says_why_when_the_sqlite_file_is_removed(tmp_path, filled):
    port = free_port()
    cmd = Command(command_lines.serve(port, filled, tmp_path), tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        health = probe(base + "/healthz", 200, cmd=cmd)
        assert health["status"] == "ok" and health["pid"] != cmd.proc.pid  # a gunicorn worker answered
        assert probe(base + "/readyz", 200) == {"status": "ready"}
        assert requests.get(base + "/api/openapi.json").status_code == 401  # everything else still needs sign-in
        Path(filled.removeprefix("sqlite:///")).unlink()
        body = probe(base + "/readyz", 503)
        assert body["status"] == "unavailable" and "no sink at" in body["reason"], body
        assert probe(base + "/healthz", 200)["status"] == "ok"  # alive all the same: nothing to restart
    finally:
        cmd.stop()
    assert cmd.proc.returncode == 0, cmd.output()[-2000:]


def test_metrics_probes_and_readyz_503_when_the_sqlite_file_is_removed(tmp_path, filled):
    port = free_port()
    cmd = Command(
        command_lines.cli("metrics", "--port", str(port), "--sink", filled, "--data-dir", str(tmp_path)),
        tmp_path / "metrics.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert probe(base + "/healthz", 200, cmd=cmd)["pid"] == cmd.proc.pid
        assert probe(base + "/readyz", 200) == {"status": "ready"}
        assert "pypi_pulse_sink_up 1.0" in requests.get(base + "/metrics").text
        Path(filled.removeprefix("sqlite:///")).unlink()
        body = probe(base + "/readyz", 503)
        assert "no sink at" in body["reason"], body
    finally:
        cmd.stop()


class Relay:
    """A TCP relay from a local port to PostgreSQL; `cut()` closes it and every connection through it, as a
    database host that drops off the network would; `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.listener.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()


@pytest.mark.postgres
def test_serve_readyz_503_while_postgresql_is_unreachable_and_ready_again_after(tmp_path, pg_url):
    open_sink(pg_url, history=tmp_path / "history").close()  # the schema, as the dataflow creates it
    parts = urlsplit(pg_url)
    relay = Relay((parts.hostname, parts.port or 5432))
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{relay.port}"
    via_relay = urlunsplit(parts._replace(netloc=netloc))
    port = free_port()
    cmd = Command(command_lines.serve(port, via_relay, tmp_path), tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert probe(base + "/readyz", 200, cmd=cmd) == {"status": "ready"}
        relay.cut()
        body = probe(base + "/readyz", 503)
        assert body["status"] == "unavailable" and body["reason"], body
        assert probe(base + "/healthz", 200)["status"] == "ok"
        relay.restore()
        assert probe(base + "/readyz", 200) == {"status": "ready"}
    finally:
        cmd.stop()
        relay.cut()


def test_dataflow_and_producer_stay_alive_while_their_loops_turn_even_idle(tmp_path, broker, topic):
    env = {"PYPI_PULSE_HEALTHZ_STALE_SECONDS": str(STALE_S)}
    flow_port, producer_port = free_port(), free_port()
    flow = Command(
        command_lines.dataflow(
            broker.bootstrap,
            topic,
            f"sqlite:///{tmp_path / 'pulse.db'}",
            tmp_path,
            "--no-recovery",
            "--metrics-port",
            str(flow_port),
        ),
        tmp_path / "dataflow.log",
        **env,
    )
    producer = None
    try:
        # the dataflow alone, on an empty topic: idle, but its worker polls the partitions
        first = probe(f"http://127.0.0.1:{flow_port}/healthz", 200, timeout=60, cmd=flow)
        assert first["status"] == "ok" and first["pid"] == flow.proc.pid
        until = time.monotonic() + 2 * STALE_S  # longer than the limit: stays alive only if the loop beats
        while time.monotonic() < until:
            body = requests.get(f"http://127.0.0.1:{flow_port}/healthz", timeout=5).json()
            assert body["status"] == "ok" and body["last_progress_seconds_ago"] < STALE_S, body
            time.sleep(0.2)
        producer = Command(
            command_lines.produce(
                broker.bootstrap, topic, tmp_path, "--rate", "50", "--metrics-port", str(producer_port)
            ),
            tmp_path / "producer.log",
            **env,
        )
        probe(f"http://127.0.0.1:{producer_port}/healthz", 200, timeout=60, cmd=producer)
        until = time.monotonic() + 2 * STALE_S
        while time.monotonic() < until:
            for port in (producer_port, flow_port):
                body = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
                assert body["status"] == "ok" and body["last_progress_seconds_ago"] < STALE_S, (port, body)
            time.sleep(0.2)
        assert "pypi_pulse_producer_events_sent" in requests.get(f"http://127.0.0.1:{producer_port}/metrics").text
    finally:
        if producer is not None:
            producer.stop()
        flow.stop()


def test_healthz_is_503_with_the_reason_once_the_main_loop_stops_beating():
    loop = Heartbeat("dataflow")
    server, _ = serve("127.0.0.1", 0, liveness=loop, stale_after_s=STALE_S)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert requests.get(base + "/healthz").status_code == 200
        loop.last -= STALE_S + 1  # as if the loop had been stuck that long
        r = requests.get(base + "/healthz")
        assert r.status_code == 503 and r.json()["status"] == "stalled" and "dataflow" in r.json()["reason"]
        loop.beat()
        assert requests.get(base + "/healthz").status_code == 200
        assert requests.get(base + "/metrics").status_code == 200
    finally:
        server.shutdown()


def test_serve_falls_back_to_waitress_where_gunicorn_cannot_be_imported(tmp_path, filled):
    shadow = tmp_path / "no-gunicorn" / "gunicorn"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("gunicorn is not installed here")\n')
    port = free_port()
    cmd = Command(
        command_lines.serve(port, filled, tmp_path, "--workers", "3"),
        tmp_path / "serve.log",
        PYTHONPATH=os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")]),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert probe(base + "/healthz", 200, cmd=cmd)["pid"] == cmd.proc.pid  # one process: waitress
        assert probe(base + "/readyz", 200, cmd=cmd) == {"status": "ready"}
        assert "waitress" in cmd.output()
        t0 = time.monotonic()
        cmd.proc.terminate()
        assert cmd.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        cmd.stop()
