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

import random
import signal
import threading
import time
from datetime import UTC, datetime

from expected_rollups import make_event
from pod_cluster_testing import PodRun, consumed
from pulse_testing import publish

T0 = datetime(2026, 11, 20, 23, 55, tzinfo=UTC).timestamp()  # the stream crosses midnight
SPAN_S = 10 * 60
N = 40_000
CHUNKS = 40  # a chunk every FEED_EVERY_S, as a live producer sends them
FEED_EVERY_S = 0.5
FAULT_AT = (0.25, 0.55)  # fractions of the events consumed when each fault lands: member 1 killed, member 0 stopped
STOP_S = 2.0  # cluster_stop_seconds here (15 in the manifests)
LIVE = {
    "PYPI_PULSE_EPOCH_SECONDS": "0.5",
    "PYPI_PULSE_LATENESS_SECONDS": "60",
    "PYPI_PULSE_CLUSTER_STOP_SECONDS": str(STOP_S),
}
NOTICE_S = 60  # a member left alone must end by itself within this (the liveness probe would take two minutes)


def _feed(bootstrap: str, topic: str, events: list[dict]) -> tuple[threading.Thread, dict]:
    """Publish the events as a live producer does, a chunk every FEED_EVERY_S, in a thread."""
    fed: dict = {}

    def feed():
        try:
            step = len(events) // CHUNKS
            for start in range(0, len(events), step):
                publish(bootstrap, topic, events[start : start + step])
                time.sleep(FEED_EVERY_S)  # the producer's pace, not a wait for a condition
        except BaseException as exc:
            fed["error"] = exc
        fed["done"] = True

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return feeder, fed


def _progress(run: PodRun, members: dict, target: int) -> None:
    deadline = time.monotonic() + 300
    while consumed(run.sink) < target:
        for i, proc in members.items():
            assert proc.poll() is None, f"member {i} ended before the kill: " + run.procs[i][1].read_text()[-4000:]
        assert time.monotonic() < deadline, f"no progress to {target} events before the kill"
        time.sleep(0.05)


def _the_other_ends(run: PodRun, members: dict, gone: int) -> None:
    (other,) = [i for i in members if i != gone]
    status = members[other].wait(NOTICE_S)  # subprocess.TimeoutExpired: it hangs without its peer
    said = run.procs[other][1].read_text()  # the processes were started in member order
    assert status != 0, f"member {other} ended as if all were well after member {gone} went"
    # one line that says what happened, not a traceback
    assert f"error: dataflow member {other} of 2 stopped: the cluster broke down" in said, said[-4000:]
    assert "Traceback" not in said, said[-4000:]


def test_a_pod_killed_or_stopped_alone_mid_stream_stops_the_cluster_and_the_restarted_pods_end_exact(
    tmp_path, broker, topic
):
    rng = random.Random(31)
    events = [make_event(rng, T0 + SPAN_S * i / N) for i in range(N)]
    feeder, fed = _feed(broker.bootstrap, topic, events)
    run = PodRun(tmp_path, broker.bootstrap, topic)
    try:
        members = run.pods(**LIVE)
        _progress(run, members, int(N * FAULT_AT[0]))
        members[1].send_signal(signal.SIGKILL)
        _the_other_ends(run, members, gone=1)
        members[1].wait(10)
        run.procs = []

        before = consumed(run.sink)
        members = run.pods(**LIVE)  # Kubernetes restarts both: the killed pod and the one that ended
        _progress(run, members, max(int(N * FAULT_AT[1]), before + 1))
        stopped_at = time.monotonic()
        members[0].terminate()  # as Kubernetes stops an evicted pod
        assert members[0].wait(STOP_S + 30) == 2
        assert time.monotonic() - stopped_at >= STOP_S  # it gave the cluster its chance to end cleanly
        said = run.procs[0][1].read_text()
        assert "error: dataflow member 0 of 2 was stopped but the other members were not" in said, said[-4000:]
        _the_other_ends(run, members, gone=0)
        run.procs = []
        assert consumed(run.sink) < N, "the last fault came after everything was consumed: it proves nothing"
        feeder.join(120)
        assert fed.get("done") and "error" not in fed, fed.get("error")

        run.pods("--until-drained", **LIVE)
        run.wait()
    finally:
        run.kill()
    run.assert_exact(events)
