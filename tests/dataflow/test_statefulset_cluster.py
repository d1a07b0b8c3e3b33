"""The dataflow started as the Kubernetes StatefulSet starts its pods forms one Bytewax cluster over separate
`pypi-pulse dataflow` processes and counts exactly; a pod whose settings cannot form a cluster says why in one line.

The members are started as pods are (tests/pod_cluster_testing.py). Member 1 starts first, as a pod may: it must
wait for member 0 to make the recovery store. A cluster stopped as Kubernetes stops its pods and restarted with
another number of members resumes exactly.

Black-box: the real broker, the processes as operators run them, the sink read back and compared with counts
computed here from the events.
"""

from __future__ import annotations

import os
import random
import subprocess
import time

import pytest
import requests
from dataflow_testing import assert_exact
from expected_rollups import expected_daily, make_event
from pod_cluster_testing import MEMBERS, SET, PodRun, free_port, host, pod_env
from pulse_testing import expected_windows, publish, stored_windows
from test_cluster import _events, _executions

from pypi_pulse import command_lines

# test_cluster's events come up to two minutes late; the lateness horizon of the default covers them
EVENTS_LATENESS = {"PYPI_PULSE_LATENESS_SECONDS": "600"}


def test_members_started_as_statefulset_pods_form_one_cluster_and_count_exactly(tmp_path, broker, topic):
    events = _events(1025)
    publish(broker.bootstrap, topic, events)
    with PodRun(tmp_path, broker.bootstrap, topic, **EVENTS_LATENESS) as run:
        run.pods("--until-drained", first=1)
        run.wait()
    # one execution of 2 workers, one in each process, over the store member 0 made for both
    assert set(_executions(run.data_dir / "recovery")) == {MEMBERS}
    assert_exact(run.sink, events)
    assert len({day for day, *_ in expected_daily(events)}) == 2  # across midnight


@pytest.mark.parametrize("before, after", [("single", "pods"), ("pods", "single")])
def test_the_cluster_resumes_exactly_after_its_shape_changes(tmp_path, broker, topic, before, after):
    """Stopped after half the events, restarted with another number of members on the same recovery volume:
    Bytewax moves the state to the new workers and the shards' closed state is on the shared volume."""
    events = _events(77)
    half = len(events) // 2
    with PodRun(tmp_path, broker.bootstrap, topic, **EVENTS_LATENESS) as run:
        publish(broker.bootstrap, topic, events[:half])
        getattr(run, before)()
        run.stop_once_consumed(half)
        publish(broker.bootstrap, topic, events[half:])
        getattr(run, after)("--until-drained")
        run.wait()
    workers = {"single": 1, "pods": MEMBERS}
    assert set(_executions(run.data_dir / "recovery")) == {workers[before], workers[after]}  # one store, both shapes
    assert_exact(run.sink, events)


def _dataflow_fails(env: dict, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        command_lines.cli("dataflow", *args),
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


def test_a_member_whose_store_never_comes_or_whose_name_is_not_its_own_says_so(tmp_path, broker, topic):
    """Member 1 without member 0 (or with a volume of its own): no store appears; a pod whose DNS name is not
    published: its address never resolves; or resolves to another machine (a restarted pod's stale record). Each
    waits `cluster_wait_seconds`, then fails in one line."""
    base = pod_env(1, free_port(), PYPI_PULSE_CLUSTER_WAIT_SECONDS="1")
    common = ("--bootstrap-servers", broker.bootstrap, "--topic", topic, "--data-dir", str(tmp_path / "alone"))
    said = _dataflow_fails(base, *common, "--sink", f"sqlite:///{tmp_path / 'a.db'}")
    assert f"no recovery store in {tmp_path / 'alone' / 'recovery'} after 1 s: member 0 makes it" in said
    unpublished = dict(base, PYPI_PULSE_CLUSTER_ADDRESS=f"{SET}-{{i}}.peers.invalid:2101")
    said = _dataflow_fails(unpublished, *common, "--sink", f"sqlite:///{tmp_path / 'b.db'}")
    assert f"this member's address {SET}-1.peers.invalid:2101 is not this machine's after 1 s: it does not" in said
    elsewhere = dict(base, PYPI_PULSE_CLUSTER_ADDRESS="192.0.2.{i}:2101")  # TEST-NET-1: no machine's address
    said = _dataflow_fails(elsewhere, *common, "--sink", f"sqlite:///{tmp_path / 'c.db'}")
    assert "address 192.0.2.1:2101 is not this machine's after 1 s: it resolves to 192.0.2.1, not an address" in said


def test_a_member_waiting_for_member_0_stays_healthy_until_it_gives_up(tmp_path, broker, topic):
    """Waiting for the store is not being stuck: its /healthz must not go stale (Kubernetes would restart it before
    it could say what it waited for), and once cluster_wait_seconds is out it says so."""
    wait_s, metrics_port = 6.0, free_port()
    env = pod_env(1, free_port(), PYPI_PULSE_CLUSTER_WAIT_SECONDS=str(wait_s), PYPI_PULSE_HEALTHZ_STALE_SECONDS="1")
    sink = f"sqlite:///{tmp_path / 'a.db'}"
    proc = subprocess.Popen(
        command_lines.dataflow(broker.bootstrap, topic, sink, tmp_path / "alone", "--metrics-port", str(metrics_port)),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answers = []
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                answers.append(requests.get(f"http://{host(1)}:{metrics_port}/healthz", timeout=2).status_code)
            except requests.RequestException:
                pass  # not serving yet, or gone
            time.sleep(0.2)
        assert proc.wait(30) == 2
        assert "no recovery store" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(answers) >= wait_s / 0.2 / 2, answers  # it answered all along the wait, well past the 1 s staleness
    assert set(answers) == {200}, answers


def test_a_recovery_directory_already_there_gets_whole_partitions_and_keeps_its_files(tmp_path, broker, topic):
    """A volume mounted on DATA_DIR/recovery, or a store whose partitions were deleted to start afresh: the
    partitions are made inside it and moved up whole; what else is there stays (spilled segments aside: the dataflow
    deletes those no snapshot refers to), and the dataflow counts exactly."""
    rng = random.Random(5)
    events = [make_event(rng, 1795219200 + i * 0.05) for i in range(2000)]
    publish(broker.bootstrap, topic, events)
    recovery = tmp_path / "volume" / "recovery"
    stray = recovery / "lost+found" / "#12"  # what a freshly formatted volume mounted there holds
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    with PodRun(tmp_path, broker.bootstrap, topic) as run:
        run.single("--until-drained")
        run.wait()
    assert [p.name for p in recovery.glob("part-*.sqlite3")] == ["part-0.sqlite3"]
    assert not list(recovery.glob(".making-*")) and not list(recovery.parent.glob(".recovery.making-*"))
    assert stray.read_bytes() == b"x"
    assert stored_windows(run.sink) == expected_windows(events)


def test_partitions_a_maker_left_half_moved_are_moved_up_before_anything_else(tmp_path):
    """Member 0 died between two moves: the partitions left in its making directory are complete (they were all
    made before the first move), so the next maker finishes the move rather than making a second, mixed set."""
    from bytewax.recovery import init_db_dir

    from pypi_pulse.dataflow.recovery_store import make_store, partitions

    recovery = tmp_path / "recovery"
    making = recovery / ".making-123"
    making.mkdir(parents=True)
    init_db_dir(making, 3)
    (making / "part-0.sqlite3").rename(recovery / "part-0.sqlite3")
    made = {p.name: p.stat().st_ino for p in making.glob("part-*")}
    make_store(recovery, 3)
    assert partitions(recovery) == 3 and not making.exists()
    assert {name: (recovery / name).stat().st_ino for name in made} == made  # the same files, not new ones
