"""Driving the real system through the CLI for the broker fault tests: the broker (`pypi-pulse broker`), producers
and dataflows as subprocesses, and truth taken from the files the test wrote and the sink's stored windows."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import requests

from pypi_pulse import command_lines
from pypi_pulse.broker import wait_for_kafka

PROJECTS = ["requests", "numpy", "boto3", "flask", "urllib3", "django", "rich"]


def cli(*args: str, log: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYPI_PULSE_LOG_FORMAT": "json"}
    return subprocess.Popen(
        command_lines.cli(*args),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
        stdin=subprocess.DEVNULL,
        env=env,
        **kw,
    )


def start_broker(port: int, tmp: Path, name: str = "broker") -> subprocess.Popen:
    proc = cli("broker", "--port", str(port), "--data-dir", str(tmp / name), log=tmp / f"{name}.log")
    deadline = time.monotonic() + 30
    while not wait_for_kafka(f"127.0.0.1:{port}", timeout=1, raise_error=False):
        assert proc.poll() is None, (tmp / f"{name}.log").read_text()
        assert time.monotonic() < deadline, "the broker did not answer"
    return proc


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.wait(timeout)


def write_events(path: Path, n: int, start: float, span_s: float = 20.0) -> int:
    """n well-formed events between `start` and `start + span_s`; returns n (the truth the test checks)."""
    with open(path, "wb") as f:
        for i in range(n):
            ts = datetime.fromtimestamp(start + span_s * i / n, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            f.write(
                orjson.dumps(
                    {
                        "timestamp": ts,
                        "country_code": ["US", "DE", "GB", None][i % 4],
                        "project": PROJECTS[i % len(PROJECTS)],
                        "details": {"installer": {"name": "pip"}, "python": "3.12.1"},
                    }
                )
                + b"\n"
            )
    return n


def produce_file(bootstrap: str, path: Path, tmp: Path, *extra: str) -> None:
    log = tmp / f"produce-{path.stem}.log"
    proc = cli(
        "produce",
        "--bootstrap-servers",
        bootstrap,
        "--source",
        f"file:{path}",
        "--speed",
        "max",
        "--no-progress",
        "--partitions",
        "4",
        "--data-dir",
        str(tmp / "producer"),
        *extra,
        log=log,
    )
    assert proc.wait(120) == 0, log.read_text()


def start_dataflow(bootstrap: str, sink: str, data_dir: Path, metrics_port: int, log: Path) -> subprocess.Popen:
    return cli(
        "dataflow",
        "--bootstrap-servers",
        bootstrap,
        "--sink",
        sink,
        "--data-dir",
        str(data_dir),
        "--recovery",
        "--metrics-port",
        str(metrics_port),
        log=log,
    )


def stored_downloads(sink: str) -> int:
    """Downloads in the sink's 1-second windows (0 before the dataflow has created it)."""
    import sqlite3

    path = sink.removeprefix("sqlite:///")
    if not Path(path).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT COALESCE(SUM(downloads), 0) FROM windows").fetchone()
        return int(row[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def wait_for(condition, timeout: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not reached within {timeout:g} s: {what}")


def metric(port: int, name: str) -> float:
    """Sum of a metric's samples on a /metrics page (0 while nothing serves it yet)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.ConnectionError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def log_events(path: Path, event: str) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if rec.get("event") == event:
                out.append(rec)
    return out


def summary_table(log: Path, title: str) -> dict[str, int]:
    """The numbers of the summary table a command printed last (`pypi-pulse produce`: read, sent, failed...)."""
    text = log.read_text(errors="replace")
    rows: dict[str, int] = {}
    for line in text[text.rindex(title) :].splitlines()[1:]:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[1].replace(",", "").isdigit():
            rows[cells[0]] = int(cells[1].replace(",", ""))
    return rows
