"""A live dataflow writing to PostgreSQL survives the server going down and coming back (a restart with some
downtime): it reports the sink unavailable meanwhile, reconnects, and every window and daily rollup is exact.

The server is a private instance started for this test (initdb + pg_ctl into a temporary directory, on a free
port): the shared CI cluster serves other tests and is never restarted."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from expected_rollups import stored_daily, stored_totals
from pulse_testing import stored_windows
from sink_faults_testing import consumed, metric, start, stop_and_drain, synthetic_producer, truth, wait_for

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port
from pypi_pulse.sink.base import open_sink

pytestmark = pytest.mark.postgres

DOWN_S = 15  # long enough for several failed attempts and a reconnect that is refused


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.skip(f"no PostgreSQL server binaries ({name}) under /usr/lib/postgresql/*/bin: install postgresql")
    return found[-1]


class PrivatePostgres:
    """initdb + pg_ctl in a directory of its own (as the `postgres` user when the tests run as root)."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pulse-pg-", dir="/tmp"))  # /tmp: traversable by `postgres`
        self.data = self.dir / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "pulse", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self.url = f"postgresql://pulse@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        r = subprocess.run(args, user=self.user, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{args[0]} failed: {r.stdout}{r.stderr}"

    def start(self) -> None:
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], user=self.user, capture_output=True
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def test_dataflow_reconnects_after_a_postgres_restart_and_stays_exact(tmp_path, broker, topic):
    _bin("initdb")
    pg = PrivatePostgres()
    flow = producer = None
    try:
        pg.start()
        sink = pg.url
        flow_port = free_port()
        env = {
            "PYPI_PULSE_IDLE_SECONDS": "1",
            "PYPI_PULSE_EPOCH_SECONDS": "1",
            "PYPI_PULSE_SINK_RETRY_MAX_SECONDS": "2",
            "PYPI_PULSE_ROLLUP_DETAIL_MIN_DOWNLOADS": "0",
            "PYPI_PULSE_LOG_FORMAT": "json",
        }
        flow_log, prod_log = tmp_path / "dataflow.log", tmp_path / "produce.log"
        flow = start(
            command_lines.dataflow(broker.bootstrap, topic, sink, tmp_path / "data", "--metrics-port", str(flow_port)),
            flow_log,
            **env,
        )
        producer = start(
            synthetic_producer(broker.bootstrap, topic, tmp_path / "producer", rate=200, seed=11),
            prod_log,
            **env,
        )
        alive = ((flow, flow_log), (producer, prod_log))
        wait_for("the first windows", lambda: consumed(sink) > 0, 60, alive)
        assert metric(flow_port, "pypi_pulse_sink_unavailable_since_seconds") == 0

        stopped_at = time.time()
        pg.stop()
        since = wait_for(
            "the dataflow to report the sink unavailable",
            lambda: metric(flow_port, "pypi_pulse_sink_unavailable_since_seconds"),
            30,
            alive,
        )
        assert stopped_at - 1 <= since <= time.time()
        while time.time() - stopped_at < DOWN_S:
            assert flow.poll() is None, flow_log.read_text()[-4000:]
            time.sleep(0.5)
        assert metric(flow_port, "pypi_pulse_sink_write_errors_total") >= 2
        pg.start()
        wait_for(
            "the dataflow to reconnect",
            lambda: metric(flow_port, "pypi_pulse_sink_unavailable_since_seconds") == 0,
            60,
            alive,
        )

        events = stop_and_drain(alive, broker.bootstrap, topic, sink, tmp_path / "data", env)

        windows, daily, totals = truth(events)
        with open_sink(sink, readonly=True, history=tmp_path / "data" / "history") as db:
            counters = db.stats().counters
            assert (stored_daily(db), stored_totals(db)) == (daily, totals)
        assert counters["consumed"] == counters["counted"] == len(events)
        assert counters.get("dropped", 0) == 0 and counters.get("dead_lettered", 0) == 0
        assert stored_windows(sink) == windows
        log = flow_log.read_text()
        assert "Traceback" not in log
        assert sum("sink.available" in line for line in log.splitlines()) == 1
        assert any("sink.unavailable" in line for line in log.splitlines())
    finally:
        for proc in (producer, flow):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        pg.remove()
