"""The dataflow started as the Kubernetes StatefulSet starts its pods forms one Bytewax cluster over separate
`pypi-pulse dataflow` processes and counts exactly; a pod whose settings cannot form a cluster says why in one line.

Each member is started as deploy/kubernetes/dataflow.yaml starts a pod: its index only from the pod's name
(PYPI_PULSE_PROCESS_ID=pypi-pulse-dataflow-<i>), the members' addresses made from PYPI_PULSE_CLUSTER_SIZE and a
PYPI_PULSE_CLUSTER_ADDRESS pattern, the same --metrics-port for every member and one data directory (the shared
volume) for the recovery store. Where the pods have a DNS name each, here each member has a loopback address of its
own (127.0.<i>.1: Linux routes all of 127/8 to the loopback), so every member listens on the same port numbers, as
pods do. Member 1 starts first, as a pod may: it must wait for member 0 to make the recovery store. A cluster
stopped as Kubernetes stops its pods and restarted with another number of members resumes exactly.

Black-box: the real broker, the processes as operators run them, the sink read back and compared with counts
computed here from the events.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from expected_rollups import expected_daily, expected_totals, stored_daily, stored_totals
from pulse_testing import expected_windows, publish, stored_windows
from test_cluster import _events, _executions

from pypi_pulse.sink.base import open_sink

SET = "pypi-pulse-dataflow"  # the StatefulSet's name: pod i is SET-i
MEMBERS = 2
RUN_SETTINGS = {"PYPI_PULSE_RECOVERY": "true", "PYPI_PULSE_IDLE_SECONDS": "1", "PYPI_PULSE_EPOCH_SECONDS": "1"}


def _free_port() -> int:
    """A port free on every loopback address (the members listen on 127.0.<i>.1)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _host(i: int) -> str:
    return f"127.0.{i}.1"


def _pod_env(i: int, cluster_port: int, **extra: str) -> dict[str, str]:
    """The environment deploy/kubernetes/dataflow.yaml gives pod i, loopback addresses in place of the pods' names."""
    return dict(
        os.environ,
        PYPI_PULSE_PROCESS_ID=f"{SET}-{i}",  # the downward API's metadata.name
        PYPI_PULSE_CLUSTER_SIZE=str(MEMBERS),
        PYPI_PULSE_CLUSTER_ADDRESS=f"127.0.{{i}}.1:{cluster_port}",
        PYPI_PULSE_METRICS_HOST=_host(i),
        **RUN_SETTINGS,
        **extra,
    )


class Run:
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

    def pods(self, *flags: str, first: int = 0) -> None:
        """The StatefulSet's pods, member `first` started first: each waits for the others as a pod does."""
        cluster_port, metrics_port = _free_port(), _free_port()
        for i in [first] + [i for i in range(MEMBERS) if i != first]:
            self.start(_pod_env(i, cluster_port), f"pod-{i}", "--metrics-port", str(metrics_port), *flags)
            if i == first and first != 0:
                # it serves its probes on the configured port of its own address (not on the port + i of a local
                # cluster's member), and cannot have made the recovery store: that is member 0's
                _healthz(_host(first), metrics_port, *self.procs[-1])
                assert not list((self.data_dir / "recovery").glob("part-*.sqlite3"))

    def single(self, *flags: str) -> None:
        self.start(dict(os.environ, **RUN_SETTINGS), "single", *flags)

    def until_consumed(self, n: int) -> None:
        """Let the live processes run until the sink counts `n` events consumed, then stop them as Kubernetes
        stops a pod (SIGTERM: the inputs end, the epoch completes, a snapshot is taken)."""
        deadline = time.monotonic() + 300
        while _consumed(self.sink) < n:
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


def _consumed(sink: str) -> int:
    try:
        with open_sink(sink, readonly=True) as db:
            return db.stats().counters.get("consumed", 0)
    except Exception:  # not made yet
        return 0


def _healthz(host: str, port: int, proc: subprocess.Popen, log_path: Path) -> None:
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


def test_members_started_as_statefulset_pods_form_one_cluster_and_count_exactly(tmp_path, broker, topic):
    events = _events(1025)
    publish(broker.bootstrap, topic, events)
    run = Run(tmp_path, broker.bootstrap, topic)
    try:
        run.pods("--until-drained", first=1)
        run.wait()
    finally:
        run.kill()
    # one execution of 2 workers, one in each process, over the store member 0 made for both
    assert set(_executions(run.data_dir / "recovery")) == {MEMBERS}
    run.assert_exact(events)


@pytest.mark.parametrize("before, after", [("single", "pods"), ("pods", "single")])
def test_the_cluster_resumes_exactly_after_its_shape_changes(tmp_path, broker, topic, before, after):
    """Stopped after half the events, restarted with another number of members on the same recovery volume:
    Bytewax moves the state to the new workers and the shards' closed state is on the shared volume."""
    events = _events(77)
    half = len(events) // 2
    run = Run(tmp_path, broker.bootstrap, topic)
    try:
        publish(broker.bootstrap, topic, events[:half])
        getattr(run, before)()
        run.until_consumed(half)
        publish(broker.bootstrap, topic, events[half:])
        getattr(run, after)("--until-drained")
        run.wait()
    finally:
        run.kill()
    workers = {"single": 1, "pods": MEMBERS}
    assert set(_executions(run.data_dir / "recovery")) == {workers[before], workers[after]}  # one store, both shapes
    run.assert_exact(events)


def _dataflow_fails(env: dict, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pypi_pulse.cli", "dataflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    "settings, says",
    [
        ({"PYPI_PULSE_PROCESS_ID": "dataflow"}, "invalid process_id (--process-id / PYPI_PULSE_PROCESS_ID)"),
        ({"PYPI_PULSE_PROCESS_ID": "dataflow-one"}, "neither a number nor a StatefulSet pod's name"),
        ({"PYPI_PULSE_PROCESS_ID": "-1"}, "neither a number nor a StatefulSet pod's name"),
        ({"PYPI_PULSE_CLUSTER_ADDRESS": "dataflow-0.peers:2101"}, "has no {i}"),
        ({"PYPI_PULSE_CLUSTER_ADDRESS": "dataflow-{i}.peers"}, "is not HOST:PORT"),
        ({"PYPI_PULSE_CLUSTER_ADDRESS": "dataflow-{i}.peers:70000"}, "is not HOST:PORT"),
        ({"PYPI_PULSE_CLUSTER_SIZE": "0"}, "invalid cluster_size"),
        ({"PYPI_PULSE_CLUSTER_SIZE": "3"}, "set PYPI_PULSE_CLUSTER_ADDRESS too"),
        ({"PYPI_PULSE_CLUSTER_ADDRESS": "dataflow-{i}.peers:2101"}, "set PYPI_PULSE_CLUSTER_SIZE too"),
        (
            {"PYPI_PULSE_CLUSTER_SIZE": "3", "PYPI_PULSE_CLUSTER_ADDRESS": "dataflow-{i}.peers:2101"},
            "cluster_size needs this member's index",
        ),
        (
            {
                "PYPI_PULSE_PROCESS_ID": "dataflow-3",
                "PYPI_PULSE_CLUSTER_SIZE": "3",
                "PYPI_PULSE_CLUSTER_ADDRESS": "dataflow-{i}.peers:2101",
            },
            "process_id 3 is out of range: cluster_size is 3",
        ),
    ],
)
def test_a_pod_whose_cluster_settings_cannot_work_fails_in_one_line_exit_2(tmp_path, settings, says):
    # no broker is given: the settings are refused before anything waits for one
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_PULSE_")}
    assert says in _dataflow_fails({**env, **settings}, "--data-dir", str(tmp_path))


def test_addresses_listed_and_made_from_the_cluster_size_at_once_are_refused(tmp_path):
    env = dict(os.environ, PYPI_PULSE_CLUSTER_SIZE="2", PYPI_PULSE_CLUSTER_ADDRESS="dataflow-{i}.peers:2101")
    said = _dataflow_fails(
        env, "--process-id", "0", "--addresses", "127.0.0.1:2101;127.0.0.1:2102", "--data-dir", str(tmp_path)
    )
    assert "set one or the other" in said


def test_a_member_whose_store_never_comes_or_whose_name_never_resolves_says_so(tmp_path, broker, topic):
    """Member 1 without member 0 (or with a volume of its own): no store appears; a pod whose DNS name is not
    published: its address never resolves. Each waits `cluster_wait_seconds`, then fails in one line."""
    base = _pod_env(1, _free_port(), PYPI_PULSE_CLUSTER_WAIT_SECONDS="1")
    common = ("--bootstrap-servers", broker.bootstrap, "--topic", topic, "--data-dir", str(tmp_path / "alone"))
    said = _dataflow_fails(base, *common, "--sink", f"sqlite:///{tmp_path / 'a.db'}")
    assert f"no recovery store in {tmp_path / 'alone' / 'recovery'} after 1 s: member 0 makes it" in said
    unpublished = dict(base, PYPI_PULSE_CLUSTER_ADDRESS=f"{SET}-{{i}}.peers.invalid:2101")
    said = _dataflow_fails(unpublished, *common, "--sink", f"sqlite:///{tmp_path / 'b.db'}")
    assert f"this member's address {SET}-1.peers.invalid:2101 does not resolve after 1 s" in said
