"""A live two-process dataflow cluster with recovery, one member SIGKILLed mid-stream, ends exact once restarted.

Black-box: the cluster runs as `pypi-pulse dataflow --processes 2` (member 0 in that process, member 1 spawned by
it). The first kill lands on member 1, found through its own /healthz (metrics port + 1): member 0 must notice and
exit with an error naming it. The second lands on member 0, the command's own process: member 1 must notice and
exit by itself. The cluster is then restarted with the same shape and drained; windows, daily history and counters
are compared with counts computed here from the events sent: a crash of either member neither loses an event nor
counts one twice.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psutil
import requests
from expected_rollups import expected_daily, expected_totals, make_event, stored_daily, stored_totals
from pulse_testing import expected_windows, publish, stored_windows
from sink_faults_testing import consumed

from pypi_pulse.sink.base import open_sink

T0 = datetime(2026, 11, 20, 23, 50, tzinfo=UTC).timestamp()  # the stream crosses midnight
SPAN_S = 25 * 60
N = 80_000
CHUNKS = 40  # the events arrive as a live stream does, a chunk every FEED_EVERY_S, so the kills land mid-stream
FEED_EVERY_S = 0.5
KILL_AT = (0.25, 0.55)  # fractions of the events consumed when each SIGKILL lands: member 1, then member 0


def _metrics_ports() -> int:
    """A port p with p and p + 1 free: member i of the cluster serves its metrics on p + i."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise AssertionError("no two consecutive free ports")


def _cluster(bootstrap: str, topic: str, sink_url: str, data_dir, port: int, log, *extra: str) -> subprocess.Popen:
    env = dict(
        os.environ, PYPI_PULSE_EPOCH_SECONDS="0.5", PYPI_PULSE_IDLE_SECONDS="1", PYPI_PULSE_LATENESS_SECONDS="60"
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pypi_pulse.cli",
            "dataflow",
            "--processes",
            "2",
            "--workers",
            "1",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--sink",
            sink_url,
            "--data-dir",
            str(data_dir),
            "--metrics-port",
            str(port),
            "--recovery",
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _member_pid(port: int, deadline: float) -> int:
    """The pid a member reports on its /healthz."""
    while True:
        try:
            return int(requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["pid"])
        except (requests.RequestException, ValueError, KeyError):
            assert time.monotonic() < deadline, f"no /healthz on port {port}"
            time.sleep(0.1)


def _wait_for_progress(proc: subprocess.Popen, sink: str, target: int, log_path) -> None:
    deadline = time.monotonic() + 300
    while consumed(sink) < target:  # each incarnation makes progress of its own before its kill
        assert proc.poll() is None, log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, f"no progress to {target} events before the kill"
        time.sleep(0.05)


def _reap(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_cluster_member_killed_mid_stream_stops_the_cluster_and_a_restart_ends_exact(tmp_path, broker, topic):
    rng = random.Random(23)
    events = [make_event(rng, T0 + SPAN_S * i / N) for i in range(N)]
    fed: dict = {}

    def feed():
        try:
            step = N // CHUNKS
            for start in range(0, N, step):
                publish(broker.bootstrap, topic, events[start : start + step])
                time.sleep(FEED_EVERY_S)  # the producer's pace, not a wait for a condition
        except BaseException as exc:
            fed["error"] = exc
        fed["done"] = True

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    sink = f"sqlite:///{tmp_path / 'cluster.db'}"
    data_dir = tmp_path / "data"
    log_path = tmp_path / "dataflow.log"
    port = _metrics_ports()
    started = []
    with open(log_path, "ab") as log:
        try:
            # member 1 killed: member 0 ends with an error that names it
            first = _cluster(broker.bootstrap, topic, sink, data_dir, port, log)
            started.append(first)
            member1 = _member_pid(port + 1, time.monotonic() + 60)
            assert member1 != first.pid
            _wait_for_progress(first, sink, int(N * KILL_AT[0]), log_path)
            os.kill(member1, signal.SIGKILL)
            assert first.wait(60) != 0
            assert "dataflow process 1 of 2 exited with signal SIGKILL" in log_path.read_text()

            # member 0 killed: member 1, left alone, ends by itself
            before = consumed(sink)
            second = _cluster(broker.bootstrap, topic, sink, data_dir, port, log)
            started.append(second)
            member1 = psutil.Process(_member_pid(port + 1, time.monotonic() + 60))
            _wait_for_progress(second, sink, max(int(N * KILL_AT[1]), before + 1), log_path)
            second.send_signal(signal.SIGKILL)
            second.wait(10)
            member1.wait(60)  # psutil.TimeoutExpired if it outlives its parent
            assert consumed(sink) < N, "the last kill came after everything was consumed: it proves nothing"
            feeder.join(120)
            assert fed.get("done") and "error" not in fed, fed.get("error")

            final = _cluster(broker.bootstrap, topic, sink, data_dir, port, log, "--until-drained")
            started.append(final)
            assert final.wait(600) == 0, log_path.read_text()[-4000:]
        finally:
            for proc in started:
                _reap(proc)

    with open_sink(sink, readonly=True) as db:
        counters = db.stats().counters
        daily, totals = stored_daily(db), stored_totals(db)
    assert counters["consumed"] == N  # restored counters plus the rest: nothing read twice, nothing skipped
    assert counters["counted"] == N
    assert counters.get("dropped", 0) == 0
    assert stored_windows(sink) == expected_windows(events)
    want = expected_daily(events)
    assert {day for day, *_ in want} == {"2026-11-20", "2026-11-21"}
    assert daily == want
    assert totals == expected_totals(want)
