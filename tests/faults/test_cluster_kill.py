"""A live two-process dataflow cluster with recovery, one member SIGKILLed mid-stream, ends exact once restarted.

Black-box: the cluster runs as `pypi-pulse dataflow --processes 2` (member 0 in that process, member 1 spawned by
it). The first kill lands on member 1, found through its own /healthz (metrics port + 1): member 0 must notice and
exit with an error naming it. The second lands on member 0, the command's own process: member 1 must notice and
exit by itself. The cluster is then restarted with the same shape and drained; windows, daily history and counters
are compared with counts computed here from the events sent: a crash of either member neither loses an event nor
counts one twice.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from typing import Optional

import psutil
import requests
from dataflow_testing import Child, LiveRun, assert_exact, spread_events, wait_for_progress, wait_until
from expected_rollups import expected_daily
from pulse_testing import unephemeral_ports

T0 = datetime(2026, 11, 20, 23, 50, tzinfo=UTC).timestamp()  # the stream crosses midnight
SPAN_S = 25 * 60
N = 80_000
CHUNKS = 40  # the events arrive as a live stream does, a chunk every FEED_EVERY_S, so the kills land mid-stream
FEED_EVERY_S = 0.5
KILL_AT = (0.25, 0.55)  # fractions of the events consumed when each SIGKILL lands: member 1, then member 0
# Member 0 imports the command, opens the sink and the recovery store before it spawns member 1; then member 1
# imports it all again (a spawned process) before it serves its /healthz. Each deadline counts from its own start.
SPAWN_S = 120
MEMBER_START_S = 60
STOP_S = 60  # for a member to notice that its peer is gone and exit


def _cluster(run: LiveRun, port: int, *extra: str) -> Child:
    return run.start(
        "--processes",
        "2",
        "--workers",
        "1",
        "--metrics-port",
        str(port),
        *extra,
        env={"PYPI_PULSE_LOG_LEVEL": "info"},  # member 1's own lines (metrics.serving...) say how far it got
    )


def _spawned_member(cluster: Child) -> Optional[psutil.Process]:
    """Member 1, once member 0 has spawned it (not multiprocessing's resource tracker, its other child)."""
    for child in psutil.Process(cluster.pid).children():
        try:
            if "multiprocessing.spawn" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def _state(member: psutil.Process) -> str:
    try:
        with member.oneshot():
            cpu = member.cpu_times()
            return f"member 1 (pid {member.pid}): {member.status()}, {cpu.user + cpu.system:.1f} s of CPU"
    except psutil.Error as exc:
        return f"member 1 (pid {member.pid}): {exc!r}"


def _member_one(cluster: Child, port: int) -> psutil.Process:
    """Member 1 once its /healthz (metrics port + 1) answers with its pid."""
    member = wait_until("member 0 spawning member 1", lambda: _spawned_member(cluster), SPAWN_S, watch=[cluster])
    spawned = time.monotonic() - (time.time() - member.create_time())  # member 1's own start

    def healthz_pid() -> int:
        try:
            gone = member.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            gone = True
        assert not gone, f"member 1 (pid {member.pid}) exited before it served /healthz\n{cluster.tail()}"
        return int(requests.get(f"http://127.0.0.1:{port + 1}/healthz", timeout=2).json()["pid"])

    pid = wait_until(
        f"member 1's /healthz on port {port + 1}, counted from member 1's start",
        healthz_pid,
        MEMBER_START_S,
        watch=[cluster],
        describe=lambda: _state(member),
        since=spawned,
    )
    assert pid == member.pid, (pid, member.pid)
    started = time.monotonic() - (time.time() - psutil.Process(cluster.pid).create_time())
    print(
        f"\nmember 1 spawned {spawned - started:.1f} s after member 0, /healthz {time.monotonic() - spawned:.1f} s later"
    )
    return member


def _exited(member: psutil.Process, cluster: Child, what: str) -> None:
    try:
        member.wait(STOP_S)
    except psutil.TimeoutExpired:
        raise AssertionError(f"member 1 still running {STOP_S} s after {what}\n{cluster.tail()}") from None


def test_a_cluster_member_killed_mid_stream_stops_the_cluster_and_a_restart_ends_exact(tmp_path, broker, topic):
    events = spread_events(23, T0, SPAN_S, N)
    assert {day for day, *_ in expected_daily(events)} == {"2026-11-20", "2026-11-21"}
    port = unephemeral_ports(2)  # member i serves its metrics on port + i, in all three clusters
    with LiveRun(tmp_path, broker.bootstrap, topic, events, CHUNKS, FEED_EVERY_S) as run:
        # member 1 killed: member 0 ends with an error that names it
        first = _cluster(run, port)
        member1 = _member_one(first, port)
        assert member1.pid != first.pid
        wait_for_progress(first, run.sink, int(N * KILL_AT[0]))
        member1.send_signal(signal.SIGKILL)
        assert first.exit_code(STOP_S, "member 1's SIGKILL") != 0
        assert "dataflow process 1 of 2 exited with signal SIGKILL" in run.log.read_text(), first.tail()

        # member 0 killed: member 1, left alone, ends by itself
        second = _cluster(run, port)
        member1 = _member_one(second, port)
        wait_for_progress(second, run.sink, max(int(N * KILL_AT[1]), run.consumed() + 1))
        second.proc.send_signal(signal.SIGKILL)
        second.exit_code(10, "its SIGKILL")
        _exited(member1, second, "member 0's SIGKILL")
        assert run.consumed() < N, "the last kill came after everything was consumed: it proves nothing"
        run.feed.join()

        final = _cluster(run, port, "--until-drained")
        assert final.exit_code(600, "the stream ended") == 0, final.tail()

    assert_exact(run.sink, events)
