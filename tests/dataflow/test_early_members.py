"""A local cluster's members 1.. are started as soon as the command knows its shape, and import the dataflow while
member 0 does (dataflow/early_members.py); a member that is never given its part leaves no process behind: not
when the command is killed while it waits for its broker, not when it refuses its shape, not when the cluster
that takes the members has another size. (That the cluster they form is exact: tests/dataflow/test_cluster.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
from pulse_testing import marked_processes, pulse_command, run_pulse, unephemeral_ports

from pypi_pulse.dataflow import early_members


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _members(mark: str) -> list[psutil.Process]:
    """The spawned members among a command's processes (multiprocessing's spawn runs them with -c ... spawn_main)."""
    out = []
    for p in marked_processes(mark):
        try:
            if any("spawn_main" in part for part in p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def test_a_cluster_command_killed_while_it_waits_for_its_broker_leaves_no_member_behind(tmp_path):
    nobody = unephemeral_ports()  # no broker listens there: the command waits for one (up to 10 s)
    mark = uuid.uuid4().hex
    cmd = [pulse_command(), "dataflow", "--bootstrap-servers", f"127.0.0.1:{nobody}", "--topic", "t"]
    cmd += ["--sink", f"sqlite:///{tmp_path / 'pulse.db'}", "--data-dir", str(tmp_path / "data"), "--processes", "2"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PULSE_TEST_MARK": mark},
    )
    try:
        member = _wait_for(lambda: _members(mark), 8.0, "member 1 started while the command waits for its broker")[0]
        assert proc.poll() is None, "the command ended before the test could kill it"
        os.kill(proc.pid, signal.SIGKILL)  # member 0 gone before it could give member 1 its part
        proc.wait(10)
        _wait_for(lambda: not member.is_running() or member.status() == psutil.STATUS_ZOMBIE, 30.0, "member 1 ended")
        assert _members(mark) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in marked_processes(mark):
            p.kill()
        proc.communicate()


def test_a_cluster_command_that_refuses_its_shape_leaves_no_member_behind():
    done, mark = run_pulse(
        "dataflow", "--processes", "2", "--process-id", "0", "--addresses", "127.0.0.1:2101;127.0.0.1:2102"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr  # one line
    assert _members(mark) == []


def test_members_started_for_another_size_of_cluster_are_ended():
    script = (
        "from pypi_pulse.dataflow import early_members as m\n"
        "m.start_early(3)\n"
        "pids = [c.pid for c, _ in m._waiting[1]]\n"
        "print(*pids, flush=True)\n"
        "assert m.take(2) is None\n"
        "print('taken', flush=True)\n"
        "input()\n"  # this parent stays alive: its members must have been ended by take, not by its exit
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        assert proc.stdout.readline().strip() == "taken"
        for pid in pids:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()
    assert early_members.take(2) is None  # nothing started in this process: the cluster spawns its members then
