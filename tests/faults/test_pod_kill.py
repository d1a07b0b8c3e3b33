"""A dataflow pod SIGKILLed, or stopped alone, mid-stream stops the whole cluster, and the restarted pods end exact.

On Kubernetes each member is a pod (tests/pod_cluster_testing.py starts them as deploy/kubernetes/dataflow.yaml
does). A Bytewax cluster cannot run without one of its members: when one dies, the others must end by themselves
(with a failure, so that Kubernetes restarts them) rather than hang; the restarted pods form the cluster again and
resume from the last snapshot in the shared recovery store. First member 1 is SIGKILLed; then, in the restarted
cluster, member 0 (the one that made the store) is stopped alone with SIGTERM, as an eviction stops a pod: its
inputs end, but the cluster cannot end without the others, and it must exit after cluster_stop_seconds rather
than wait until Kubernetes kills it. The events arrive as a live stream, so both land mid-stream; windows, daily
history and counters are compared with counts computed here from the events sent.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

from dataflow_testing import Child, LiveFeed, assert_exact, consumed, spread_events, wait_until
from expected_rollups import expected_daily
from pod_cluster_testing import PodRun

T0 = datetime(2026, 11, 20, 23, 55, tzinfo=UTC).timestamp()  # the stream crosses midnight
SPAN_S = 10 * 60
N = 40_000
CHUNKS = 40  # a chunk every FEED_EVERY_S, as a live producer sends them
FEED_EVERY_S = 0.5
FAULT_AT = (0.25, 0.55)  # fractions of the events consumed when each fault lands: member 1 killed, member 0 stopped
STOP_S = 2.0  # cluster_stop_seconds here (15 in the manifests)
NOTICE_S = 60  # a member left alone must end by itself within this (the liveness probe would take two minutes)


def _progress(run: PodRun, members: dict[int, Child], target: int) -> None:
    """Each incarnation must make progress of its own before its fault, or the fault proves nothing."""
    wait_until(f"{target} events consumed", lambda: consumed(run.sink) >= target, 300, watch=list(members.values()))


def _the_other_ends(members: dict[int, Child], gone: int) -> None:
    (other,) = [i for i in members if i != gone]
    status = members[other].exit_code(NOTICE_S, f"member {gone} went")  # it must not hang without its peer
    said = members[other].log.read_text()
    assert status != 0, f"member {other} ended as if all were well after member {gone} went"
    # one line that says what happened, not a traceback
    assert f"error: dataflow member {other} of 2 stopped: the cluster broke down" in said, members[other].tail()
    assert "Traceback" not in said, members[other].tail()


def test_a_pod_killed_or_stopped_alone_mid_stream_stops_the_cluster_and_the_restarted_pods_end_exact(
    tmp_path, broker, topic
):
    events = spread_events(31, T0, SPAN_S, N)
    feed = LiveFeed(broker.bootstrap, topic, events, CHUNKS, FEED_EVERY_S)
    stop = {"PYPI_PULSE_CLUSTER_STOP_SECONDS": str(STOP_S)}
    with PodRun(tmp_path, broker.bootstrap, topic) as run:
        members = run.pods(**stop)
        _progress(run, members, int(N * FAULT_AT[0]))
        members[1].proc.send_signal(signal.SIGKILL)
        _the_other_ends(members, gone=1)
        members[1].exit_code(10, "its SIGKILL")
        run.running = []

        before = consumed(run.sink)
        members = run.pods(**stop)  # Kubernetes restarts both: the killed pod and the one that ended
        _progress(run, members, max(int(N * FAULT_AT[1]), before + 1))
        stopped_at = time.monotonic()
        members[0].proc.terminate()  # as Kubernetes stops an evicted pod
        assert members[0].exit_code(STOP_S + 30, "its SIGTERM, alone") == 2, members[0].tail()
        assert time.monotonic() - stopped_at >= STOP_S  # it gave the cluster its chance to end cleanly
        said = members[0].log.read_text()
        assert "error: dataflow member 0 of 2 was stopped but the other members were not" in said, members[0].tail()
        _the_other_ends(members, gone=0)
        run.running = []
        assert consumed(run.sink) < N, "the last fault came after everything was consumed: it proves nothing"
        feed.join()

        run.pods("--until-drained", **stop)
        run.wait()
    assert_exact(run.sink, events)
    assert len({day for day, *_ in expected_daily(events)}) == 2  # across midnight
