"""`pypi-pulse up` starts the whole system on embedded defaults, and Ctrl-C stops all of it, leaving no orphan."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import psutil
import requests

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port
from pypi_pulse.sink.base import open_sink


def test_up_runs_everything_and_ctrl_c_stops_it_cleanly(tmp_path):
    data = tmp_path / "data"
    dashboard_port = free_port()
    env = dict(
        os.environ,
        PYPI_PULSE_BROKER_PORT="0",
        PYPI_PULSE_PORT=str(dashboard_port),
        PYPI_PULSE_METRICS_PORT=str(free_port()),
        PYPI_PULSE_BACKFILL_DAYS="3",
        # explicit ports: the derived ones (metrics port + 1 and + 2) may be an ephemeral port in use
        PYPI_PULSE_PRODUCER_METRICS_PORT=str(free_port()),
        PYPI_PULSE_DATAFLOW_METRICS_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        command_lines.up(
            data,
            "--rate",
            "300",
            "--seed",
            "1",
            "--host",
            "127.0.0.1",
            "--public-api",
            "--no-backfill",
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    sink = f"sqlite:///{data / 'pypi-pulse.db'}"
    try:
        deadline = time.monotonic() + 240
        rows = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with open_sink(sink, readonly=True) as db:
                    rows = db.latest_windows(5)
            except Exception:
                rows = []
            if len(rows) == 5 and all(r.downloads > 0 for r in rows):
                break
            time.sleep(0.2)
        assert len(rows) == 5, "no live windows reached the sink"
        # live: the newest window is recent (event time follows the wall clock)
        assert time.time() - rows[-1].start < 30
        assert sum(r.downloads for r in rows) > 300  # ~300 events/s over 5 windows, with the daily rhythm
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert len(family) >= 3  # up + broker + producer + dataflow (+ dashboard, metrics)
        (producer,) = [c for c in psutil.Process(proc.pid).children() if "produce" in c.cmdline()]
        args = producer.cmdline()
        assert args[args.index("--pack-events") + 1] == "1000"  # the embedded broker's topic is up's own: packed
        # the embedded broker's cost grows with the record batches it holds: fewer, larger ones
        assert producer.environ().get("PYPI_PULSE_LINGER_MS") == "200"
        # --public-api reaches the dashboard: the JSON API answers without a session
        r = requests.get(f"http://127.0.0.1:{dashboard_port}/api/live/summary", timeout=10)
        assert r.status_code == 200 and r.json(), r.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out.decode()
    text = out.decode()
    assert "broker" in text and "dataflow" in text and "producer" in text  # it said what runs where
    # the first-run password line is whole even though the output is no terminal (rich wraps at 80 columns there)
    assert re.search(
        r"created user admin with password \S+ \(shown only now; manage users with `pypi-pulse users`\)", text
    ), text
    assert "history backfill" not in text  # --no-backfill (PYPI_PULSE_BACKFILL_DAYS=3 says otherwise)
    with open_sink(sink, readonly=True) as db:  # no day before the live stream's first has rollups
        first_day = time.strftime("%Y-%m-%d", time.gmtime(db.windows(0, 2**40)[0].start))
        assert db.history_query("SELECT COUNT(*) FROM daily_totals WHERE day < ?", (first_day,))[0][0] == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in family
    ):
        time.sleep(0.1)
    alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphans left behind: {alive}"
