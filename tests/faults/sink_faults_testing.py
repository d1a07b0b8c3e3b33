"""Helpers of the sink fault tests: the real CLI as subprocesses (a live producer, the dataflow, the dashboard
server), reading their HTTP endpoints, and truth computed from what the topic holds (read back with a plain
consumer), never from the pipeline's own aggregation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataflow_testing import consumed  # noqa: E402, F401  (the sink fault tests import it from here)
from expected_rollups import expected_daily, expected_totals  # noqa: E402
from pulse_testing import expected_second, expected_windows  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402
from pypi_pulse.sink.base import open_sink  # noqa: E402


def start(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    """A `pypi-pulse` command (pypi_pulse/command_lines.py) with its output in `log` (read by the test afterwards)."""
    return subprocess.Popen(argv, env=dict(os.environ, **env), stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def synthetic_producer(bootstrap: str, topic: str, data_dir: Path, rate: float, seed: int) -> list[str]:
    """`pypi-pulse produce` of the synthetic stream at `rate` events a second, the same stream for the same `seed`."""
    return command_lines.produce(
        bootstrap, topic, data_dir, "--source", "synthetic", "--rate", f"{rate:g}", "--seed", str(seed), "--no-progress"
    )


def wait_for(what: str, check: Callable[[], object], timeout: float, alive: tuple = ()) -> object:
    """The first truthy check(), polled until `timeout`; fails early if one of the `alive` processes exits."""
    deadline = time.monotonic() + timeout
    while True:
        for proc, log in alive:
            assert proc.poll() is None, (
                f"{proc.args[3]} exited ({proc.returncode}) while waiting for {what}:\n{Path(log).read_text()[-4000:]}"
            )
        try:
            value = check()
        except (requests.RequestException, OSError, ValueError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def rolled_up(sink_url: str, history: Optional[Path] = None) -> int:
    """Downloads (mirrors included) in the daily rollups applied so far (`history`: where the dataflow keeps them,
    DATA_DIR/history, when the sink is not a SQLite file beside it)."""
    with open_sink(sink_url, readonly=True, history=history) as db:
        return db.history_query("SELECT SUM(downloads) FROM daily_totals WHERE dimension = 'with_mirrors'")[0][0] or 0


def metric(port: int, name: str) -> Optional[float]:
    """A sample's value on a /metrics page (the first line for `name` without labels)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def summary(port: int) -> dict:
    r = requests.get(f"http://127.0.0.1:{port}/api/live/summary", timeout=10)
    r.raise_for_status()
    return r.json()


def topic_events(bootstrap: str, topic: str) -> list[dict]:
    """Every event the topic holds, read to end-of-partition on each partition (the broker's reported end offsets
    are too low to be trusted)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from pypi_pulse.broker import partition_count

    n = partition_count(bootstrap, topic)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"truth-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(n)])
    events, ended, deadline = [], set(), time.monotonic() + 120
    while len(ended) < n and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                ended.add(msg.partition())
                continue
            raise AssertionError(msg.error())
        for line in msg.value().splitlines():
            if line.strip():
                events.append(orjson.loads(line))
    c.close()
    assert len(ended) == n, "the topic could not be read to its end"
    return events


def truth(events: list[dict]) -> tuple[dict, Counter, Counter]:
    """Expected windows, daily rows and daily totals, from the raw events."""
    numeric = [dict(e, timestamp=expected_second(e["timestamp"])) for e in events]
    daily = expected_daily(numeric)
    return expected_windows(events), daily, expected_totals(daily)


def stop_and_drain(alive: tuple, bootstrap: str, topic: str, sink: str, data_dir: Path, env: dict) -> list[dict]:
    """Stop the live producer and dataflow (`alive` starts (dataflow, log), (producer, log)) once the dataflow has read
    the whole topic, then resume the dataflow to the topic's end, so that it seals and applies every rollup minute
    (live, minutes seal only past the lateness horizon); returns the topic's events, each now in the rollups."""
    (flow, flow_log), (producer, prod_log) = alive[:2]
    producer.send_signal(signal.SIGINT)
    assert producer.wait(30) == 0, prod_log.read_text()[-2000:]
    events = topic_events(bootstrap, topic)
    wait_for("the backlog to be consumed", lambda: consumed(sink) == len(events), 120, alive[:1])
    flow.send_signal(signal.SIGTERM)
    assert flow.wait(120) == 0, flow_log.read_text()[-4000:]
    drained = subprocess.run(
        command_lines.dataflow(bootstrap, topic, sink, data_dir, "--until-drained"),
        env=dict(os.environ, **env),
        capture_output=True,
        timeout=300,
    )
    assert drained.returncode == 0, drained.stderr.decode()[-4000:]
    # the dataflow's history: beside a SQLite sink, else in its data directory (Settings.history_path)
    assert rolled_up(sink, None if sink.startswith("sqlite:") else data_dir / "history") == len(events)
    return events
