"""Dataflow members started as deploy/kubernetes/dataflow.yaml starts its pods, on one machine.

Each member gets the environment its pod gets: its index only from the pod's name (PYPI_PULSE_PROCESS_ID=
pypi-pulse-dataflow-<i>), the members' addresses made from PYPI_PULSE_CLUSTER_SIZE and a PYPI_PULSE_CLUSTER_ADDRESS
pattern, the same --metrics-port for every member and one data directory (the shared volume) for the recovery
store. Where the pods have a DNS name each, here each member has a loopback address of its own (127.0.<i>.1: Linux
routes all of 127/8 to the loopback), so every member listens on the same port numbers, as pods do. The processes
are tests/dataflow_testing.py's (`start_dataflow`: recovery on, its short epochs, a session and a log each).
"""

from __future__ import annotations

import os
from pathlib import Path

import requests
from dataflow_testing import Child, consumed, start_dataflow, wait_until
from pulse_testing import unephemeral_ports

SET = "pypi-pulse-dataflow"  # the StatefulSet's name: pod i is SET-i
MEMBERS = 2


def free_port() -> int:
    """A port free on every address (the members listen on 127.0.<i>.1), below the ephemeral range."""
    return unephemeral_ports(1, "0.0.0.0")


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
        **extra,
    }


class PodRun:
    """A dataflow's processes against one topic, sink and data directory (the shared volume) across the incarnations
    a test starts, `env` added to the settings of each; as a context manager, every one is reaped at its end."""

    def __init__(self, tmp_path: Path, bootstrap: str, topic: str, **env: str):
        self.tmp_path, self.bootstrap, self.topic, self.env = tmp_path, bootstrap, topic, env
        self.sink = f"sqlite:///{tmp_path / 'pulse.db'}"
        self.data_dir = tmp_path / "volume"
        self.running: list[Child] = []
        self.started: list[Child] = []

    def start(self, name: str, *flags: str, env: dict) -> Child:
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        child = start_dataflow(
            self.bootstrap, self.topic, self.sink, self.data_dir, log, *flags, env={**env, **self.env}
        )
        child.name = name
        self.running.append(child)
        self.started.append(child)
        return child

    def pods(self, *flags: str, first: int = 0, **env: str) -> dict[int, Child]:
        """The StatefulSet's pods, member `first` started first (each waits for the others, as a pod does), with
        `env` added to each pod's settings; their processes by member."""
        cluster_port = free_port()
        metrics_port = next(p for p in iter(free_port, None) if p != cluster_port)
        members = {}
        for i in [first] + [i for i in range(MEMBERS) if i != first]:
            pod = pod_env(i, cluster_port, **env)
            members[i] = self.start(f"pod-{i}", "--metrics-port", str(metrics_port), *flags, env=pod)
            if i == first and first != 0:
                # it serves its probes on the configured port of its own address (not on the port + i of a local
                # cluster's member), and cannot have made the recovery store: that is member 0's
                url = f"http://{host(i)}:{metrics_port}/healthz"
                wait_until(f"{url} answers", lambda u=url: requests.get(u, timeout=2).ok, 60, watch=[members[i]])
                assert not list((self.data_dir / "recovery").glob("part-*.sqlite3"))
        return members

    def single(self, *flags: str) -> Child:
        return self.start("single", *flags, env={})

    def stop_once_consumed(self, n: int) -> None:
        """Let the live processes run until the sink counts `n` events consumed, then stop them all at once as
        Kubernetes stops a StatefulSet scaled to 0 (SIGTERM: the inputs end, a last snapshot is taken)."""
        wait_until(f"{n} events consumed", lambda: consumed(self.sink) >= n, 300, watch=self.running)
        for child in self.running:
            child.proc.terminate()
        self.wait()

    def wait(self, timeout: float = 300) -> None:
        """Until every running process has ended, each with status 0."""
        for child in self.running:
            assert child.exit_code(timeout, "the end of its input") == 0, child.tail()
        self.running = []

    def __enter__(self) -> PodRun:
        return self

    def __exit__(self, *exc) -> None:
        for child in self.started:
            child.reap()
