"""Checks made before a command starts anything: the files it will read, the sink it will serve, the ports it
will listen on.

Each failure is a `UserError` (one line, exit 2) naming the file, sink or port and the flag that changes it. Found
later, the same problems surface as a traceback from deep inside a library, or (for `up`) as children that start,
die and restart until `up` gives up, on ports that belong to someone else.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pypi_pulse.errors import EmptySink, UserError

if TYPE_CHECKING:
    from pypi_pulse.config import Settings


def unreadable_file(path: Path) -> Optional[str]:
    """Why `path` cannot be read as a file ("... does not exist", "... is a directory", ...), or None if it can.
    A FIFO or device is refused before it is opened: opening a FIFO would block, and a replay maps and seeks."""
    try:
        if not path.exists():
            return f"{path} does not exist"
        if path.is_dir():
            return f"{path} is a directory, not a file"
        if not path.is_file():
            return f"{path} is not a regular file"
        with open(path, "rb"):
            pass
    except PermissionError:
        return f"{path} cannot be read (permission denied)"
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    return None


HISTORY_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")  # pyarrow.fs.FileSystem.from_uri


def history_problem(location: str) -> Optional[str]:
    """Why `location` cannot hold the rollup history, or None. Checked without touching a remote store (opening
    an s3:// filesystem may ask the network for the bucket's region): its scheme only; a local path must be a
    directory or creatable as one."""
    scheme, sep, rest = location.partition("://")
    if sep and scheme.lower() != "file":
        if scheme.lower() in HISTORY_SCHEMES:
            return None
        return f"{location}: unknown scheme {scheme!r}: pass a directory or a URL of {', '.join(HISTORY_SCHEMES)}"
    path = Path(rest if sep else location).expanduser()
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if ancestor.is_dir():
                return None
            return f"{ancestor} is not a directory: pass a directory (it is created if missing)"
    return None


def check_sink_for_reading(url: str) -> None:
    """What `serve` and `metrics` need before they listen: a sink they can open. A SQLite file that does not exist
    yet, in a directory that does, is the dashboard's empty state (the dataflow creates it: `up` starts them
    together); a directory that does not exist is a wrong --sink. PostgreSQL must answer and accept the
    credentials; its tables may still be missing (created by the dataflow)."""
    if url.startswith("sqlite:///"):
        from pypi_pulse.sink.base import open_sink

        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            if not path.parent.is_dir():
                raise UserError(
                    f"no such sink: directory {path.parent} does not exist; run the dataflow "
                    "(`pypi-pulse up` or `pypi-pulse run`) first or pass --sink sqlite:///PATH.db"
                )
            return
        if path.is_dir():
            raise UserError(f"sink {path} is a directory: pass --sink sqlite:///PATH.db of a file")
        try:
            open_sink(url, readonly=True).close()
        except EmptySink:  # being created by the dataflow: the empty state again
            pass
    elif url.startswith(("postgresql://", "postgres://")):
        from pypi_pulse.extras import require

        require("postgres")
        from pypi_pulse.sink.postgres_connection import connect

        connect(url, readonly=True).close()
    else:
        from pypi_pulse.sink.base import open_sink

        open_sink(url, readonly=True).close()  # an unsupported scheme: its own one-line error


@dataclass(frozen=True)
class Listener:
    """A port a command will listen on, what listens there, and the flag (or setting) that moves it."""

    host: str
    port: int
    what: str
    flag: str


def up_listeners(s: Settings) -> list[Listener]:
    """Every port `pypi-pulse up` will listen on, directly or through its children."""
    producer_port, dataflow_port = s.up_component_metrics_ports()
    out = [
        Listener(s.host, s.port, "the dashboard", "--port"),
        Listener(s.metrics_host, s.metrics_port, "the metrics exporter", "--metrics-port"),
        Listener(
            s.metrics_host,
            producer_port,
            "the producer's metrics",
            "PYPI_PULSE_PRODUCER_METRICS_PORT" if s.producer_metrics_port else "--metrics-port (it uses that port + 1)",
        ),
        Listener(
            s.metrics_host,
            dataflow_port,
            "the dataflow's metrics",
            "PYPI_PULSE_DATAFLOW_METRICS_PORT" if s.dataflow_metrics_port else "--metrics-port (it uses that port + 2)",
        ),
    ]
    if not s.bootstrap_servers and s.broker_port:
        out.append(Listener("127.0.0.1", s.broker_port, "the embedded broker", "--broker-port (0: any free port)"))
    return out


def check_listeners(listeners: list[Listener]) -> None:
    """Refuse, naming the port and its flag, if two listeners share a port or one of them cannot bind."""
    seen: dict[int, Listener] = {}
    for lst in listeners:
        if lst.port in seen:
            other = seen[lst.port]
            raise UserError(
                f"port {lst.port} would be used twice, by {other.what} and by {lst.what}: "
                f"change {lst.flag} or {other.flag}"
            )
        seen[lst.port] = lst
    for lst in listeners:
        problem = _bind_problem(lst.host, lst.port)
        if problem == errno.EADDRINUSE:
            raise UserError(
                f"port {lst.port} on {lst.host} ({lst.what}) is already in use: move it with {lst.flag}, "
                "or stop what listens there (another pypi-pulse?)"
            )
        if problem is not None:
            raise UserError(
                f"cannot listen on {lst.host}:{lst.port} for {lst.what} ({os.strerror(problem)}): "
                f"fix the address, or move the port with {lst.flag}"
            )


def _bind_problem(host: str, port: int) -> Optional[int]:
    """The errno of binding (host, port) as our servers do (SO_REUSEADDR: a port in TIME_WAIT is free), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            return errno.EADDRNOTAVAIL
        except OSError as exc:
            return exc.errno or errno.EADDRNOTAVAIL
    return None
