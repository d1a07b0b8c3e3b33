"""Helpers the tests import: push events through the real producer path and the real dataflow, and compute what
the sink should hold with code written apart from the pipeline's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Optional, Union

import orjson


def publish(bootstrap: str, topic: str, events: Iterable[Union[dict, bytes]], pack: int = 1) -> dict[int, int]:
    """Send events through the real Publisher (`pack` > 1: packed messages of that many events); returns the
    acknowledged end offset of each partition."""
    from pypi_pulse.producer.publisher import Publisher

    pub = Publisher(bootstrap, topic, topic + "-dlq")
    if pack > 1:
        pub.send_packed([e if isinstance(e, bytes) else orjson.dumps(e) for e in events], pack)
        pub.flush()
        return dict(pub.end_offsets)
    for e in events:
        if isinstance(e, dict):
            project = e.get("project") or (e.get("file") or {}).get("project") or ""
            pub.send(orjson.dumps(e), str(project).encode())
        else:
            pub.send(e, None)
    pub.flush()
    return dict(pub.end_offsets)


def run_flow(
    bootstrap: str,
    topic: str,
    sink_url: str,
    *,
    end_offsets: Optional[dict[int, int]] = None,
    recovery_dir: Optional[Path] = None,
    **cfg,
) -> None:
    """Run the real dataflow until it has read `end_offsets` (or, without them, until the topic stays drained)."""
    from pypi_pulse.broker import partition_count
    from pypi_pulse.dataflow.flow import FlowConfig
    from pypi_pulse.dataflow.runner import run_dataflow

    n = partition_count(bootstrap, topic)
    drain = None if end_offsets is not None else cfg.pop("drain_idle_s", 1.0)
    flow_cfg = FlowConfig(bootstrap, topic, topic + "-dlq", n, sink_url, drain_idle_s=drain, **cfg)
    run_dataflow(
        flow_cfg,
        recovery_dir=recovery_dir,
        epoch_s=1.0,
        stop_offsets=(lambda: end_offsets) if end_offsets is not None else None,
    )


# ---- independent expectations -------------------------------------------------------------------------------------
# Deliberately written apart from the dataflow's code (plain datetime parsing, a regex of PEP 503), so that tests
# compare the pipeline with a second implementation, not with itself.
import re as _re
from collections import Counter as _Counter
from collections import defaultdict as _defaultdict
from datetime import UTC
from datetime import datetime as _dt


def expected_second(ts) -> int:
    if isinstance(ts, (int, float)):
        v = float(ts)
        return int(v / 1e6) if v > 1e14 else int(v / 1e3) if v > 1e11 else int(v)
    s = ts.replace(" UTC", "+00:00").replace("Z", "+00:00")
    d = _dt.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp() // 1)


def expected_windows(events: Iterable[dict]) -> dict[int, dict]:
    """start second -> {"downloads", "countries", "unique_packages", "top"} computed from raw event dicts."""
    by_sec_country: dict[int, _Counter] = _defaultdict(_Counter)
    by_sec_project: dict[int, _Counter] = _defaultdict(_Counter)
    for e in events:
        sec = expected_second(e["timestamp"])
        cc = e.get("country_code") or "ZZ"
        project = e.get("project") or (e.get("file") or {}).get("project")
        by_sec_country[sec][cc] += 1
        by_sec_project[sec][_re.sub(r"[-_.]+", "-", project).lower()] += 1
    out = {}
    for sec, countries in by_sec_country.items():
        projects = by_sec_project[sec]
        top = sorted(projects.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        out[sec] = {
            "downloads": sum(countries.values()),
            "countries": dict(countries),
            "unique_packages": len(projects),
            "top": [list(t) for t in top],
        }
    return out


def stored_windows(sink_url: str) -> dict[int, dict]:
    from pypi_pulse.sink.base import open_sink

    with open_sink(sink_url, readonly=True) as db:
        rows = db.windows(0, 2**40)
    return {
        r.start: {
            "downloads": r.downloads,
            "countries": dict(r.countries),
            "unique_packages": r.unique_packages,
            "top": [list(t) for t in r.top],
        }
        for r in rows
    }


def poll_sink(sink_url: str, predicate, timeout: float = 120):
    """The first truthy `predicate(sink)` on a read-only sink, polled until `timeout` (the sink may not exist yet)."""
    import time

    from pypi_pulse.sink.base import open_sink

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open_sink(sink_url, readonly=True) as db:
                value = predicate(db)
            if value:
                return value
        except Exception:  # the dataflow has not created the sink yet
            pass
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@contextlib.contextmanager
def postgres_schema(base_url: str, prefix: str = "pulse_t"):
    """A new, empty PostgreSQL schema, dropped afterwards; yields a sink URL that points at it (libpq's
    `options=-csearch_path=...`), so tests never see each other's rows."""
    import uuid
    from urllib.parse import quote

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


# ---- the installed command, black-box -----------------------------------------------------------------------------
def pulse_command() -> str:
    """The installed `pypi-pulse` entry point (what a user runs), beside this interpreter."""
    import shutil
    import sys

    beside = Path(sys.executable).with_name("pypi-pulse")
    return str(beside) if beside.exists() else shutil.which("pypi-pulse") or "pypi-pulse"


def run_pulse(*args: str, env: Optional[dict] = None, timeout: float = 60):
    """Run `pypi-pulse ARGS` to its end; returns (CompletedProcess, mark). Every process it starts inherits the
    environment variable PULSE_TEST_MARK=mark (see `marked_processes`). A command still running at `timeout`
    (a server that should have refused to start) is killed with its process group and fails the test."""
    import os
    import signal
    import subprocess
    import uuid

    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [pulse_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {}), "PULSE_TEST_MARK": mark},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for p in marked_processes(mark):
            p.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"`pypi-pulse {' '.join(args)}` was still running after {timeout} s: {err[-2000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), mark


def marked_processes(mark: str) -> list:
    """Live processes (not zombies) started by a `run_pulse` call: they carry its mark in their environment."""
    import psutil

    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("PULSE_TEST_MARK") == mark:
                found.append(p)
        except psutil.Error:
            pass
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on (host, port): binding it as a server does (SO_REUSEADDR) succeeds."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def unephemeral_ports(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive free ports, below the ephemeral range, for a server a test starts later (and
    may restart on the same port). In the range, any outgoing connection on the machine (Kafka clients, other
    tests) may take a chosen port before the server binds it: Linux gives connect() the even ports and bind(0) the
    odd ones, so the port after one from bind(0) is always where connections go."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, max(low - count, 20001))
        if all(port_is_free(port + i, host) for i in range(count)):
            return port
    raise AssertionError(f"no {count} consecutive free ports between 20000 and {low}")
