"""A live dataflow with recovery, SIGKILLed again and again while it streams and seals rollup blocks, ends exact.

Black-box: the dataflow runs as `pypi-pulse dataflow` (the command operators run), the kills land wherever the
process happens to be (reading, writing windows, sealing or handing over a block), and the result is read from
the sink and compared with windows and daily rollups computed here from the events sent. The contract it guards:
a crash neither loses an event nor counts one twice, in the per-second windows or in the daily history.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from expected_rollups import expected_daily, expected_totals, make_event, stored_daily, stored_totals
from pulse_testing import expected_windows, publish, stored_windows
from sink_faults_testing import consumed

from pypi_pulse.sink.base import open_sink

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
SPAN_S = 35 * 60  # three whole 10-minute rollup blocks seal while the dataflow streams
N = 120_000
CHUNKS = 60  # the events arrive as a live stream does, a chunk every FEED_EVERY_S, so the kills land mid-stream
FEED_EVERY_S = 0.5
KILL_AT = (0.2, 0.45, 0.7)  # fractions of the events consumed when each SIGKILL lands


def _dataflow(bootstrap: str, topic: str, sink_url: str, data_dir, log, *extra: str) -> subprocess.Popen:
    env = dict(
        os.environ, PYPI_PULSE_EPOCH_SECONDS="0.5", PYPI_PULSE_IDLE_SECONDS="1", PYPI_PULSE_LATENESS_SECONDS="60"
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pypi_pulse.cli",
            "dataflow",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--sink",
            sink_url,
            "--data-dir",
            str(data_dir),
            "--recovery",
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _crash(proc: subprocess.Popen) -> None:
    """SIGKILL the dataflow's own process, as a crash would: what it started must notice and stop by itself."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _reap(proc: subprocess.Popen) -> None:
    """Whatever is left of a process group once the test is over."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_dataflow_killed_three_times_mid_stream_ends_with_exact_windows_and_history(tmp_path, broker, topic):
    rng = random.Random(2026)
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
    sink = f"sqlite:///{tmp_path / 'kills.db'}"
    data_dir = tmp_path / "data"
    log_path = tmp_path / "dataflow.log"

    started = []
    with open(log_path, "ab") as log:
        for fraction in KILL_AT:
            proc = _dataflow(broker.bootstrap, topic, sink, data_dir, log)
            started.append(proc)
            before = consumed(sink)
            deadline = time.monotonic() + 300
            # each incarnation must make progress of its own before it is killed, or the kill proves nothing
            while consumed(sink) < max(int(N * fraction), before + 1):
                assert proc.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, f"no progress past {before} events before the kill"
                time.sleep(0.05)
            _crash(proc)
        assert consumed(sink) < N, "the last kill came after everything was consumed: it proves nothing"
        feeder.join(120)
        assert fed.get("done") and "error" not in fed, fed.get("error")

        final = _dataflow(broker.bootstrap, topic, sink, data_dir, log, "--until-drained")
        started.append(final)
        try:
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
    assert daily == want
    assert totals == expected_totals(want)
    assert "Traceback" not in log_path.read_text()
