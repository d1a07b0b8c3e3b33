"""`pypi-pulse up`: every component as a child process of one command, stopped together on Ctrl-C.

Each child is the same command a production deployment runs alone (`produce`, `dataflow`, `serve`, `metrics`), so
`up` exercises exactly the deployed code paths. Children die with their parent (PR_SET_PDEATHSIG), so even a
killed `up` leaves no orphan behind.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from pypi_pulse.command_lines import cli
from pypi_pulse.config import Settings
from pypi_pulse.errors import UserError
from pypi_pulse.lifetime import dying_with

console = Console(stderr=True)


@dataclass
class Child:
    name: str
    args: list[str]
    where: str
    proc: Optional[subprocess.Popen] = None
    restarts: int = 0

    def start(self, env: dict, log_dir: Path) -> None:
        log = open(log_dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            cli(*self.args),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=dying_with(signal.SIGTERM),
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 4.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


BROKER_WARN_BYTES = 2 * 2**30
BROKER_WARN_CORES = 0.75


class BrokerWatch:
    """Says when the memory-only embedded broker starts to hurt, before the live windows do. It keeps every event
    (memory), and its cost per record batch grows with the batches it holds (CPU: about 0.007 of a core more each
    minute at first with `up`'s 200 ms batches, 0.03 with 100 ms, and faster as it holds more; measured with
    benchmarks/latency.py), so a long `up` slows down until restarted.
    Each warning is given once per level; memory levels double, CPU levels rise by a quarter of a core."""

    def __init__(
        self,
        pid: int,
        warn_bytes: int = BROKER_WARN_BYTES,
        warn_cores: float = BROKER_WARN_CORES,
        every_s: float = 60.0,
    ):
        import psutil

        self._errors = psutil.Error
        try:
            self._proc: Optional[psutil.Process] = psutil.Process(pid)
        except psutil.Error:  # already gone: nothing to watch, and `up` reports its children's exits itself
            self._proc = None
        self.warn_bytes, self.warn_cores, self.every_s = warn_bytes, warn_cores, every_s
        self._since, self._cpu_then = time.monotonic(), self._usage()[1]

    def _usage(self) -> tuple[int, float]:
        """(resident bytes, CPU seconds used so far); zeros once the broker is gone (`up` is stopping)."""
        if self._proc is None:
            return 0, 0.0
        try:
            with self._proc.oneshot():
                times = self._proc.cpu_times()
                return self._proc.memory_info().rss, times.user + times.system
        except self._errors:
            return 0, 0.0

    def check(self) -> list[str]:
        out = []
        rss, cpu = self._usage()
        if rss >= self.warn_bytes:
            out.append(
                f"the embedded broker holds {rss / 2**30:.1f} GiB (it keeps every event in memory); "
                "for long runs use --bootstrap-servers with a Kafka that has retention"
            )
            self.warn_bytes *= 2
        now = time.monotonic()
        if now - self._since >= self.every_s:
            cores = (cpu - self._cpu_then) / (now - self._since)
            self._since, self._cpu_then = now, cpu
            if cores >= self.warn_cores:
                out.append(
                    f"the embedded broker used {cores:.2f} of a core over the last {self.every_s:g} s (its work "
                    "grows with the record batches it holds) and the live windows will fall behind: restart "
                    "`up`, raise PYPI_PULSE_LINGER_MS, or use --bootstrap-servers with a Kafka that has retention"
                )
                self.warn_cores += 0.25
        return out


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_all(s: Settings, config: Optional[Path]) -> None:
    from pypi_pulse.broker import EmbeddedBroker, ensure_topics, wait_for_kafka
    from pypi_pulse.extras import require_for

    require_for(sink=s.sink_url, source=s.source)  # said once, before anything starts, not by a restarting child
    s.data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = s.data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    broker = None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    children: list[Child] = []
    try:
        if s.bootstrap_servers:
            wait_for_kafka(s.bootstrap_servers)
            bootstrap = s.bootstrap_servers
        else:
            broker = EmbeddedBroker(port=s.broker_port, log_path=log_dir / "broker.log").start()
            bootstrap = broker.bootstrap
        ensure_topics(bootstrap, {s.topic: s.partitions, s.dlq_topic: 1})
        from pypi_pulse.sink.base import open_sink

        open_sink(s.sink_url, history=s.history_path).close()
        env = dict(os.environ)
        env.update(
            {
                "PYPI_PULSE_BOOTSTRAP_SERVERS": bootstrap,
                "PYPI_PULSE_SINK": s.sink_url,
                "PYPI_PULSE_HISTORY": s.history_path,
                "PYPI_PULSE_DATA_DIR": str(s.data_dir),
                "PYPI_PULSE_TOPIC": s.topic,
                "PYPI_PULSE_DLQ_TOPIC": s.dlq_topic,
                "PYPI_PULSE_LOG_LEVEL": s.log_level,
                "PYPI_PULSE_LOG_FORMAT": s.log_format,
            }
        )
        if config:
            env["PYPI_PULSE_CONFIG"] = str(config)
        if broker is not None:
            # the children cannot tell the embedded broker from any other: say which producer linger it needs
            env["PYPI_PULSE_LINGER_MS"] = str(s.linger_ms_for(embedded_broker=True))
            # the embedded broker is memory-only: recovery state of an earlier run points at offsets that are gone
            import shutil

            shutil.rmtree(s.recovery_dir, ignore_errors=True)
        produce_args = ["produce", "--source", s.source, "--rate", str(s.rate), "--no-progress"]
        if s.seed is not None:
            produce_args += ["--seed", str(s.seed)]
        produce_args += ["--pack-events", str(s.pack_events_for(own_topic=broker is not None))]
        dataflow_args = ["dataflow"]
        producer_where, dataflow_where = f"{s.source} → {s.topic} @ {s.rate:g} ev/s", f"{s.topic} → {s.sink_url}"
        if _has("pypi_pulse.metrics.commands"):  # each component's own health metrics, next to the exporter's port
            pm, dm = s.up_component_metrics_ports()
            produce_args += ["--metrics-port", str(pm)]
            dataflow_args += ["--metrics-port", str(dm)]
            producer_where += f" (metrics http://{s.metrics_host}:{pm}/metrics)"
            dataflow_where += f" (metrics http://{s.metrics_host}:{dm}/metrics)"
        children.append(Child("producer", produce_args, producer_where))
        children.append(Child("dataflow", dataflow_args, dataflow_where))
        if _has("pypi_pulse.dashboard.commands"):
            children.append(
                Child(
                    "dashboard",
                    ["serve", "--host", s.host, "--port", str(s.port)] + (["--public-api"] if s.public_api else []),
                    f"http://{s.host}:{s.port}",
                )
            )
        if _has("pypi_pulse.metrics.commands"):
            children.append(
                Child(
                    "metrics",
                    ["metrics", "--host", s.metrics_host, "--port", str(s.metrics_port)],
                    f"http://{s.metrics_host}:{s.metrics_port}/metrics",
                )
            )
        _before_start(s)
        _first_history(s, stop)
        for c in children:
            c.start(env, log_dir)
        table = Table(title="pypi-pulse is up (Ctrl-C stops everything)")
        table.add_column("component")
        table.add_column("where")
        table.add_column("pid")
        table.add_row(
            "broker",
            bootstrap + ("" if broker is None else " (embedded, memory-only)"),
            str(broker.proc.pid) if broker and broker.proc else "-",
        )
        for c in children:
            table.add_row(c.name, c.where, str(c.proc.pid) if c.proc is not None else "-")
        table.add_row("logs", str(log_dir), "")
        console.print(table)
        watch = BrokerWatch(broker.proc.pid) if broker is not None and broker.proc is not None else None
        while not stop.wait(0.5):
            for message in watch.check() if watch is not None else ():
                console.print(f"[yellow]{message}[/]")
            for c in children:
                if not c.alive():
                    code = c.proc.returncode if c.proc is not None else None
                    if c.restarts >= 5:
                        raise UserError(f"{c.name} keeps exiting (code {code}); see {log_dir / (c.name + '.log')}")
                    c.restarts += 1
                    console.print(f"[yellow]{c.name} exited with code {code}; restarting ({c.restarts}/5)[/]")
                    c.start(env, log_dir)
    finally:
        for c in reversed(children):
            c.stop()
        if broker is not None:
            broker.stop()
        console.print("pypi-pulse stopped")


def _first_history(s: Settings, stop: threading.Event) -> None:
    """On an empty sink, a synthetic stream gets `backfill_days` of synthetic history (newest day first, in the
    background, in well under a minute) so that the history tabs show something at once."""
    if s.source != "synthetic" or not s.backfill_days or not _has("pypi_pulse.producer.backfill"):
        return
    from pypi_pulse.producer.backfill import first_history_background

    threading.Thread(
        target=first_history_background, args=(s,), kwargs={"stop": stop}, name="first-history", daemon=True
    ).start()


def _before_start(s: Settings) -> None:
    """Hooks of components that must act before the children start (e.g. creating the first dashboard user)."""
    if _has("pypi_pulse.dashboard.commands"):
        from pypi_pulse.dashboard.commands import before_up

        before_up(s)
