"""An install without an extra (`pypi-pulse[postgres]`, `[bigquery]`): each command that needs it says, in one line
and with exit 2, which extra to install, and starts nothing; the base install alone runs the embedded pipeline.

A missing package is simulated in the installed command's process and every process it starts: a sitecustomize
on PYTHONPATH sets `sys.modules[name] = None` for the modules named in PULSE_TEST_MISSING_MODULES, which makes
`import name` fail exactly as it does when the distribution is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pulse_testing import marked_processes, run_pulse, stored_windows

from pypi_pulse.broker import free_port

POSTGRES_URL = "postgresql://pulse:pulse@127.0.0.1:5432/pulse_test"  # never reached: refused before connecting
EXTRA_MODULES = ("psycopg", "psycopg_pool", "google.cloud.bigquery", "gunicorn")
SITECUSTOMIZE = """\
import os, sys
for _name in os.environ.get("PULSE_TEST_MISSING_MODULES", "").split(","):
    if _name:
        sys.modules[_name] = None
"""


@pytest.fixture
def without(tmp_path):
    """`without(*modules)` -> the environment of a command run on an install that lacks those modules."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)

    def env(*modules: str) -> dict:
        path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, "PULSE_TEST_MISSING_MODULES": ",".join(modules)}

    return env


def refused(args: list[str], env: dict, timeout: float = 60) -> str:
    """Run the command; assert one `error:` line, exit 2, no traceback, nothing left running; return the line."""
    proc, mark = run_pulse(*args, env=env, timeout=timeout)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not marked_processes(mark), "a process it started is still running"
    return lines[0]


def test_the_simulated_missing_module_really_is_missing(without, tmp_path):
    """The harness itself: the entry point's interpreter cannot import a blocked module, and can import the rest."""
    import subprocess
    import sys

    script = (
        "import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m); print(m, 'ok')\n"
        "    except ImportError:\n        print(m, 'missing')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "psycopg", "orjson"],
        env={**os.environ, **without("psycopg")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.split("\n")[:2] == ["psycopg missing", "orjson ok"]


@pytest.mark.parametrize("missing", ["psycopg", "psycopg_pool"])
@pytest.mark.parametrize(
    "command",
    [
        ["windows", "--start", "2026-11-20T00:00:00Z", "--end", "2026-11-21T00:00:00Z"],
        ["serve", "--port", str(free_port())],
        ["metrics", "--port", str(free_port())],
        ["backfill", "--source", "synthetic", "--start", "2026-05-01", "--end", "2026-05-01", "--no-progress"],
    ],
)
def test_a_postgresql_sink_without_the_postgres_extra_names_the_extra(without, command, missing):
    line = refused(command, {**without(missing), "PYPI_PULSE_SINK": POSTGRES_URL})  # as the deploy files set it
    assert f"module {missing} is not installed" in line
    assert "pip install 'pypi-pulse[postgres]'" in line


def test_the_dataflow_on_a_postgresql_sink_without_the_postgres_extra_names_the_extra(without, broker, topic):
    line = refused(
        ["dataflow", "--bootstrap-servers", broker.bootstrap, "--topic", topic, "--sink", POSTGRES_URL],
        without("psycopg"),
    )
    assert "pip install 'pypi-pulse[postgres]'" in line


def test_a_bigquery_backfill_without_the_bigquery_extra_names_the_extra(without, sqlite_url):
    line = refused(
        [
            "backfill",
            "--source",
            "bigquery",
            "--billing-project",
            "p",
            "--start",
            "2026-05-01",
            "--end",
            "2026-05-01",
            "--no-progress",
            "--sink",
            sqlite_url,
        ],
        without("google.cloud.bigquery"),
    )
    assert "the BigQuery source needs the bigquery extra" in line and "pip install 'pypi-pulse[bigquery]'" in line


def test_a_bigquery_producer_without_the_bigquery_extra_names_the_extra(without, broker, topic, tmp_path):
    line = refused(
        [
            "produce",
            "--source",
            "bigquery",
            "--billing-project",
            "p",
            "--bootstrap-servers",
            broker.bootstrap,
            "--topic",
            topic,
            "--no-progress",
            "--data-dir",
            str(tmp_path),
        ],
        without("google.cloud.bigquery"),
    )
    assert "pip install 'pypi-pulse[bigquery]'" in line


def test_the_base_install_runs_the_embedded_pipeline_without_any_extra(without, tmp_path):
    """What `pip install -e . && pypi-pulse up` relies on: broker, producer, dataflow and SQLite sink import and run
    with no extra installed, and every event is stored."""
    sink = f"sqlite:///{tmp_path / 'pulse.db'}"
    n = 3000
    proc, _ = run_pulse(
        "run",
        "--source",
        "synthetic",
        "--count",
        str(n),
        "--rate",
        "100000",
        "--seed",
        "7",
        "--sink",
        sink,
        "--data-dir",
        str(tmp_path / "data"),
        "--json",
        env=without(*EXTRA_MODULES),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not installed" not in proc.stderr
    assert sum(w["downloads"] for w in stored_windows(sink).values()) == n
    assert Path(tmp_path / "pulse.db").exists()


def test_up_with_the_bigquery_source_without_the_extra_names_it_before_starting_anything(without, tmp_path):
    ports = [str(free_port()) for _ in range(2)]
    line = refused(
        [
            "up",
            "--source",
            "bigquery",
            "--no-backfill",
            "--port",
            ports[0],
            "--metrics-port",
            ports[1],
            "--broker-port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        {**without("google.cloud.bigquery"), "PYPI_PULSE_BILLING_PROJECT": "p"},
    )
    assert "pip install 'pypi-pulse[bigquery]'" in line
    assert not (tmp_path / "data" / "logs").exists(), "children were started"


def test_up_on_the_embedded_defaults_serves_everything_without_any_extra(without, tmp_path):
    """`pip install -e . && pypi-pulse up`: with no extra installed (so no gunicorn: serve runs on waitress) the
    windows reach the sink, the dashboard answers and the exporter exports; Ctrl-C stops it all."""
    import signal
    import subprocess
    import time

    import requests
    from pulse_testing import pulse_command

    data = tmp_path / "data"
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        **without(*EXTRA_MODULES),
        "PYPI_PULSE_BROKER_PORT": "0",
        "PYPI_PULSE_PRODUCER_METRICS_PORT": str(free_port()),
        "PYPI_PULSE_DATAFLOW_METRICS_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [
            pulse_command(),
            "up",
            "--data-dir",
            str(data),
            "--rate",
            "300",
            "--no-backfill",
            "--public-api",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    sink = f"sqlite:///{data / 'pypi-pulse.db'}"
    try:
        deadline, seen = time.monotonic() + 120, {}
        while time.monotonic() < deadline and len(seen) < 3:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if "sink" not in seen and (data / "pypi-pulse.db").exists() and stored_windows(sink):
                    seen["sink"] = True
                r = requests.get(f"http://127.0.0.1:{port}/api/live/summary", timeout=2)
                if r.status_code == 200:
                    seen["dashboard"] = True
                m = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
                if m.status_code == 200 and "pypi_pulse_sink_up 1.0" in m.text:
                    seen["metrics"] = True
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.5)  # polling interval of the condition above, bounded by its deadline
        assert len(seen) == 3, (seen, proc.poll())
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out = proc.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert "not installed" not in out and "Traceback" not in out, out
    assert not list(data.glob("logs/*.log")) or "Traceback" not in "".join(
        f.read_text(errors="replace") for f in data.glob("logs/*.log")
    )
