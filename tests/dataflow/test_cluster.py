"""The dataflow as a Bytewax cluster of several processes gives exactly what one process gives: the same windows and
the same history rows, both equal to counts computed here from the events, for a topic read across midnight with
late events; a batch `run --processes 2` gives the exact summary; a cluster shape that cannot run is refused.

Black-box: `pypi-pulse dataflow` and `pypi-pulse run` as operators run them, read back from the sink.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from dataflow_testing import assert_exact
from expected_rollups import expected_daily, make_event, stored_daily
from pulse_testing import expected_windows, publish, stored_windows, unephemeral_ports

from pypi_pulse import command_lines
from pypi_pulse.sink.base import open_sink

MIDNIGHT = 1795219200 + 86400  # a UTC midnight
N = 30_000
SPAN_S = 1200.0  # ten minutes either side of midnight
LATE_SHARE = 0.03  # events stamped up to two minutes before their neighbours in the topic (within the horizon)


def _events(seed: int) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(N):
        ts = MIDNIGHT - SPAN_S / 2 + SPAN_S * i / N
        if rng.random() < LATE_SHARE:
            ts -= rng.uniform(1.0, 120.0)
        events.append(make_event(rng, ts))
    return events


def _dataflow(bootstrap: str, topic: str, sink: str, data_dir: Path, *shape: str) -> None:
    env = dict(os.environ, PYPI_PULSE_IDLE_SECONDS="1", PYPI_PULSE_EPOCH_SECONDS="1")
    proc = subprocess.run(
        command_lines.dataflow(bootstrap, topic, sink, data_dir, "--until-drained", *shape),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _executions(recovery_dir: Path) -> list[int]:
    """The worker count of every execution Bytewax recorded in the recovery store (one row per partition file)."""
    counts = []
    for part in sorted(recovery_dir.glob("part-*.sqlite3")):
        with sqlite3.connect(part) as db:
            counts += [n for (n,) in db.execute("SELECT worker_count FROM exs")]
    return counts


def test_two_processes_store_the_windows_and_history_one_process_stores_and_both_are_exact(tmp_path, broker, topic):
    events = _events(2026)
    publish(broker.bootstrap, topic, events)
    assert {day for day, *_ in expected_daily(events)} == {"2026-11-21", "2026-11-22"}  # across midnight
    for name, shape in (("single", ("--processes", "1")), ("cluster", ("--processes", "2"))):
        sink = f"sqlite:///{tmp_path / name / 'pulse.db'}"
        _dataflow(broker.bootstrap, topic, sink, tmp_path / name, "--workers", "1", *shape)
        assert_exact(sink, events)  # so both store the same windows and history rows
    # the cluster really ran as two workers, one in each process, sharing one recovery store
    assert set(_executions(tmp_path / "cluster" / "recovery")) == {2}
    assert set(_executions(tmp_path / "single" / "recovery")) == {1}


def test_a_batch_run_as_two_processes_gives_the_exact_summary(tmp_path):
    events = _events(7)
    export = tmp_path / "export.ndjson"
    export.write_text("".join(json.dumps(e) + "\n" for e in events))
    sink = f"sqlite:///{tmp_path / 'run.db'}"
    proc = subprocess.run(
        command_lines.replay(export, sink, tmp_path / "data", "--json", "--processes", "2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("events_read", "sent", "counted", "failed", "dead_lettered", "dropped")} == {
        "events_read": N,
        "sent": N,
        "counted": N,
        "failed": 0,
        "dead_lettered": 0,
        "dropped": 0,
    }
    assert stored_windows(sink) == expected_windows(events)
    with open_sink(sink, readonly=True) as db:
        assert stored_daily(db) == expected_daily(events)
    assert not list((tmp_path / "data").glob("stop-offsets-*")), "the run leaves its stop offsets behind"


@pytest.mark.parametrize(
    "flags, says",
    [
        (("--process-id", "0"), "--process-id needs --addresses"),
        (("--addresses", "127.0.0.1:2101;127.0.0.1:2102"), "--addresses needs --process-id"),
        (("--process-id", "2", "--addresses", "127.0.0.1:2101;127.0.0.1:2102"), "--process-id 2 is out of range"),
        (("--process-id", "-1", "--addresses", "127.0.0.1:2101"), "--process-id -1 is out of range"),
        (("--processes", "2", "--process-id", "0", "--addresses", "127.0.0.1:2101;127.0.0.1:2102"), "one or the other"),
    ],
)
def test_a_cluster_shape_that_cannot_run_is_one_line_and_exit_2(tmp_path, flags, says):
    # no broker is given: the shape is refused before anything waits for one
    proc = subprocess.run(
        command_lines.cli("dataflow", "--data-dir", str(tmp_path), *flags),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and says in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_a_local_cluster_whose_member_metrics_port_is_taken_says_so_in_one_line_at_once(tmp_path, broker, topic):
    """Member i of a local cluster serves its metrics on --metrics-port + i: that port taken is one line, exit 2,
    before any member starts, not a member's traceback after the cluster has waited for it."""
    port = unephemeral_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        started = time.monotonic()
        proc = subprocess.run(
            command_lines.dataflow(broker.bootstrap, topic, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "data")
            + ["--processes", "2", "--metrics-port", str(port), "--until-drained"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert f"127.0.0.1:{port + 1}" in proc.stderr and "dataflow process 1" in proc.stderr
    assert time.monotonic() - started < 20
