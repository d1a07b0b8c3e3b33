"""The dataflow as operators run it, for the tests that start, kill and restart it.

`pypi-pulse dataflow` runs in a process group of its own with its output (and that of the cluster members it
spawns, which inherit it) in a log file; every wait ends on a condition or on a deadline, and whatever fails quotes
the tails of the logs of the processes involved, so that a failure on a loaded CI machine says why. The exactness
check compares the sink with counts computed here from the events sent, never with the pipeline's own code.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests
from expected_rollups import expected_daily, expected_totals, make_event, stored_daily, stored_totals
from pulse_testing import expected_windows, publish, stored_windows

from pypi_pulse import command_lines
from pypi_pulse.errors import UserError
from pypi_pulse.sink.base import open_sink

# Epochs of half a second, so that kills land between snapshots often; drained after a second without news; a
# minute of lateness (not the default ten), so that windows close and rollup blocks seal while the stream runs and
# the kills land among those writes.
KILL_TEST_ENV = {
    "PYPI_PULSE_EPOCH_SECONDS": "0.5",
    "PYPI_PULSE_IDLE_SECONDS": "1",
    "PYPI_PULSE_LATENESS_SECONDS": "60",
}
TAIL_CHARS = 4000


@dataclass
class Child:
    """A `pypi-pulse` subprocess and the log its output goes to."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = TAIL_CHARS) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.pid}, {self.log.name}), last {chars} characters:\n{text[-chars:]}"

    def assert_running(self, what: str) -> None:
        code = self.proc.poll()
        assert code is None, f"{self.name} exited ({code}) while waiting for {what}\n{self.tail()}"

    def exit_code(self, timeout: float, what: str) -> int:
        """Its exit status, waiting at most `timeout` s for it to end (`what`: why it should)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running {timeout:g} s after {what}\n{self.tail()}") from None

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, as an operator stops it; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.exit_code(timeout, "its Ctrl-C (SIGINT)")

    def reap(self) -> None:
        """SIGKILL whatever is left of its process group (it must have been started in a session of its own)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tails(children: Iterable[Child]) -> str:
    return "\n".join(child.tail() for child in children)


def wait_until(
    what: str,
    condition: Callable[[], object],
    timeout: float,
    *,
    watch: Sequence[Child] = (),
    poll_s: float = 0.05,
    describe: Optional[Callable[[], str]] = None,
    since: Optional[float] = None,
) -> object:
    """The first truthy `condition()`, polled until `timeout` s after `since` (a `time.monotonic()`; default now):
    the moment the condition could first become true. Fails at once if a watched process exits; a failure quotes
    the watched processes' logs, and `describe()` (the state of something the logs may not show)."""
    start = time.monotonic()
    deadline = (start if since is None else since) + timeout
    while True:
        for child in watch:
            child.assert_running(what)
        try:
            value = condition()
        except (requests.RequestException, OSError, ValueError):  # an endpoint or file not there yet
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            state = f"\n{describe()}" if describe is not None else ""
            waited = f"{time.monotonic() - start:.1f} s waited here"
            raise AssertionError(f"not reached within {timeout:g} s ({waited}): {what}{state}\n{tails(watch)}")
        time.sleep(poll_s)


def start_dataflow(
    bootstrap: str, topic: str, sink: str, data_dir, log: Path, *extra: str, env: Optional[dict] = None
) -> Child:
    """`pypi-pulse dataflow --recovery` in a session of its own, its output appended to `log`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command_lines.dataflow(bootstrap, topic, sink, data_dir, "--recovery", *extra),
            env={**os.environ, **KILL_TEST_ENV, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Child("dataflow", proc, log)


def live_dataflow(bootstrap: str, topic: str, sink: str, data_dir, lateness_s: float, **env: str) -> subprocess.Popen:
    """`pypi-pulse dataflow` without recovery on a live stream: events later than `lateness_s` are dropped, dead
    letters go to TOPIC-dlq, and its output is piped as text (`communicate()` once it is stopped); `env`: more
    settings."""
    return subprocess.Popen(
        command_lines.dataflow(
            bootstrap, topic, sink, data_dir, "--no-recovery", "--lateness-seconds", f"{lateness_s:g}"
        ),
        env={**os.environ, "PYPI_PULSE_DLQ_TOPIC": topic + "-dlq", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def drain(bootstrap: str, topic: str, sink: str, data_dir, log: Path, timeout: float) -> None:
    """`pypi-pulse dataflow --recovery --until-drained` to its end: it must exit 0 within `timeout` s, else the test
    fails quoting its log; whatever is left of it is reaped either way."""
    child = start_dataflow(bootstrap, topic, sink, data_dir, log, "--until-drained")
    try:
        assert child.exit_code(timeout, "the topic was drained") == 0, child.tail()
    finally:
        child.reap()


def consumed(sink_url: str) -> int:
    """The sink's `consumed` counter: 0 until the dataflow has created the sink."""
    try:
        with open_sink(sink_url, readonly=True) as db:
            stats = db.stats()
    except UserError:
        return 0
    return stats.counters.get("consumed", 0) if stats else 0


def wait_for_progress(child: Child, sink: str, target: int, timeout: float = 300) -> None:
    """Until the dataflow has counted `target` events as consumed: each incarnation must make progress of its own
    before it is killed, or the kill proves nothing."""
    wait_until(
        f"{target} events consumed (the sink's counter)",
        lambda: consumed(sink) >= target,
        timeout,
        watch=[child],
        describe=lambda: f"consumed: {consumed(sink)}",
    )


def crash(child: Child) -> None:
    """SIGKILL the dataflow's own process, as a crash would: what it started must notice and stop by itself."""
    child.proc.send_signal(signal.SIGKILL)
    child.exit_code(10, "its SIGKILL")


class LiveFeed:
    """Events published in `chunks` a pace apart from a thread, as a live stream arrives, so that kills land
    mid-stream."""

    def __init__(self, bootstrap: str, topic: str, events: list[dict], chunks: int, every_s: float):
        self.args = (bootstrap, topic, events, chunks, every_s)
        self.error: Optional[BaseException] = None
        self.done = False
        self.thread = threading.Thread(target=self._feed, name="live-feed", daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        bootstrap, topic, events, chunks, every_s = self.args
        try:
            step = len(events) // chunks
            for start in range(0, len(events), step):
                publish(bootstrap, topic, events[start : start + step])
                time.sleep(every_s)  # the producer's pace, not a wait for a condition
        except BaseException as exc:
            self.error = exc
        self.done = True

    def join(self, timeout: float = 120) -> None:
        """Until every event is published; fails if publishing failed."""
        self.thread.join(timeout)
        assert self.done and self.error is None, self.error or f"the feed still publishing after {timeout:g} s"


class LiveRun:
    """One dataflow's sink, data directory (recovery store) and log across the incarnations a test starts and kills
    while `events` arrive as a live stream (`feed`); as a context manager, every incarnation is reaped at its end."""

    def __init__(self, tmp_path: Path, bootstrap: str, topic: str, events: list[dict], chunks: int, every_s: float):
        self.bootstrap, self.topic = bootstrap, topic
        self.sink = f"sqlite:///{tmp_path / 'pulse.db'}"
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "dataflow.log"
        self.started: list[Child] = []
        self.feed = LiveFeed(bootstrap, topic, events, chunks, every_s)

    def start(self, *extra: str, env: Optional[dict] = None) -> Child:
        child = start_dataflow(self.bootstrap, self.topic, self.sink, self.data_dir, self.log, *extra, env=env)
        self.started.append(child)
        return child

    def consumed(self) -> int:
        return consumed(self.sink)

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc) -> None:
        for child in self.started:
            child.reap()


def spread_events(seed: int, start: float, span_s: float, n: int) -> list[dict]:
    """`n` events of PyPI's shape (expected_rollups.make_event) spread evenly over `span_s` seconds from `start`."""
    rng = random.Random(seed)
    return [make_event(rng, start + span_s * i / n) for i in range(n)]


def assert_exact(sink: str, events: list[dict]) -> None:
    """The sink holds exactly the windows, daily history and totals computed here from `events`, and its counters
    say each event was read and counted once."""
    with open_sink(sink, readonly=True) as db:
        counters = db.stats().counters
        daily, totals = stored_daily(db), stored_totals(db)
    assert counters["consumed"] == len(events), counters  # restored counters plus the rest: none twice, none skipped
    assert counters["counted"] == len(events), counters
    assert counters.get("dropped", 0) == 0 and counters.get("dead_lettered", 0) == 0, counters
    assert stored_windows(sink) == expected_windows(events)
    want = expected_daily(events)
    assert daily == want
    assert totals == expected_totals(want)
