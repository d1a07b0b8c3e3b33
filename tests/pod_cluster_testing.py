"""Dataflow members started as deploy/kubernetes/dataflow.yaml starts its pods, on one machine.

Each member gets the environment its pod gets: its index only from the pod's name (PYPI_PULSE_PROCESS_ID=
pypi-pulse-dataflow-<i>), the members' addresses made from PYPI_PULSE_CLUSTER_SIZE and a PYPI_PULSE_CLUSTER_ADDRESS
pattern, the same --metrics-port for every member and one data directory (the shared volume) for the recovery
store. Where the pods have a DNS name each, here each member has a loopback address of its own (127.0.<i>.1: Linux
routes all of 127/8 to the loopback), so every member listens on the same port numbers, as pods do.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import requests
from expected_rollups import expected_daily, expected_totals, stored_daily, stored_totals
from pulse_testing import expected_windows, port_is_free, stored_windows

from pypi_pulse.sink.base import open_sink

SET = "pypi-pulse-dataflow"  # the StatefulSet's name: pod i is SET-i
MEMBERS = 2
RUN_SETTINGS = {"PYPI_PULSE_RECOVERY": "true", "PYPI_PULSE_IDLE_SECONDS": "1", "PYPI_PULSE_EPOCH_SECONDS": "1"}


def free_port() -> int:
    """A port free on every address (the members listen on 127.0.<i>.1), below the ephemeral range: there any
    outgoing connection on the machine (Kafka clients, other tests) could take it before the member binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, max(low, 20001))
        if port_is_free(port, "0.0.0.0"):
            return port
    raise AssertionError(f"no free port between 20000 and {low}")


def host(i: int) -> str:
    return f"127.0.{i}.1"


def pod_env(i: int, cluster_port: int, **extra: str) -> dict[str, str]:
    """The environment deploy/kubernetes/dataflow.yaml gives pod i, loopback addresses in place of the pods' names."""
    return {
        **os.environ,
        "PYPI_PULSE_PROCESS_ID": f"{SET}-{i}",  # the downward API's metadata.name
        "PYPI_PULSE_CLUSTER_SIZE": str(MEMBERS),
        "PYPI_PULSE_CLUSTER_ADDRESS": f"127.0.{{i}}.1:{cluster_port}",
        "PYPI_PULSE_METRICS_HOST": host(i),
        **RUN_SETTINGS,
        **extra,
    }


class PodRun:
    """A dataflow's processes against one topic, sink and data directory (the shared volume), each with its log."""

    def __init__(self, tmp_path, bootstrap: str, topic: str):
        self.tmp_path, self.bootstrap, self.topic = tmp_path, bootstrap, topic
        self.sink = f"sqlite:///{tmp_path / 'pulse.db'}"
        self.data_dir = tmp_path / "volume"
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, env: dict, name: str, *flags: str) -> subprocess.Popen:
        log_path = self.tmp_path / f"{name}-{len(self.procs)}.log"
        args = ["--bootstrap-servers", self.bootstrap, "--topic", self.topic, "--sink", self.sink]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pypi_pulse.cli", "dataflow", *args, "--data-dir", str(self.data_dir), *flags],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((proc, log_path))
        return proc

    def pods(self, *flags: str, first: int = 0, **env: str) -> dict[int, subprocess.Popen]:
        """The StatefulSet's pods, member `first` started first (each waits for the others, as a pod does), with
        `env` added to each pod's settings; their processes by member."""
        cluster_port = free_port()
        metrics_port = next(p for p in iter(free_port, None) if p != cluster_port)
        members = {}
        for i in [first] + [i for i in range(MEMBERS) if i != first]:
            members[i] = self.start(
                pod_env(i, cluster_port, **env), f"pod-{i}", "--metrics-port", str(metrics_port), *flags
            )
            if i == first and first != 0:
                # it serves its probes on the configured port of its own address (not on the port + i of a local
                # cluster's member), and cannot have made the recovery store: that is member 0's
                healthz(host(first), metrics_port, *self.procs[-1])
                assert not list((self.data_dir / "recovery").glob("part-*.sqlite3"))
        return members

    def single(self, *flags: str) -> None:
        self.start(dict(os.environ, **RUN_SETTINGS), "single", *flags)

    def until_consumed(self, n: int) -> None:
        """Let the live processes run until the sink counts `n` events consumed, then stop them as Kubernetes
        stops a pod (SIGTERM: the inputs end, the epoch completes, a snapshot is taken)."""
        deadline = time.monotonic() + 300
        while consumed(self.sink) < n:
            for proc, log_path in self.procs:
                assert proc.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, f"never consumed {n}"
            time.sleep(0.1)
        for proc, _ in self.procs:
            proc.terminate()
        self.wait()

    def wait(self) -> None:
        for proc, log_path in self.procs:
            assert proc.wait(300) == 0, log_path.read_text()[-4000:]
        self.procs = []

    def kill(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def assert_exact(self, events: list[dict]) -> None:
        with open_sink(self.sink, readonly=True) as db:
            counters = db.stats().counters
            daily, totals = stored_daily(db), stored_totals(db)
        assert counters["consumed"] == counters["counted"] == len(events), counters
        assert counters.get("dropped", 0) == 0 and counters.get("dead_lettered", 0) == 0
        assert stored_windows(self.sink) == expected_windows(events)
        want = expected_daily(events)
        assert len({day for day, *_ in want}) == 2  # across midnight
        assert daily == want
        assert totals == expected_totals(want)


def consumed(sink: str) -> int:
    try:
        with open_sink(sink, readonly=True) as db:
            return db.stats().counters.get("consumed", 0)
    except Exception:  # not made yet
        return 0


def healthz(host: str, port: int, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://{host}:{port}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert proc.poll() is None, log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, f"no /healthz on {host}:{port}"
        time.sleep(0.1)
