"""Starting a `/metrics` endpoint, with a fixable message when the address is taken, and its probes.

Beside `/metrics` the same port answers `/healthz` (the process is alive: for the producer and the dataflow, their
main loop made progress within `stale_after_s`, see metrics/liveness.py) and, for the exporter, `/readyz` (the sink
answers a trivial query now; 503 with the reason otherwise). Probes are JSON and never touch the registry.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Optional
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from pypi_pulse.errors import UserError
from pypi_pulse.metrics.liveness import Heartbeat

log = structlog.get_logger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # every scrape and probe would be a line on stderr
        pass


class _Server(ThreadingWSGIServer):
    address_family = socket.AF_INET


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def probes_app(
    metrics_app: Callable,
    liveness: Optional[Heartbeat],
    stale_after_s: float,
    readiness: Optional[Callable[[], Optional[str]]],
) -> Callable:
    """The WSGI app of the port: /healthz, /readyz (when `readiness` is given), everything else `/metrics`."""

    def answer(start_response, status: str, body: dict) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(
            status,
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")],
        )
        return [data]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            body: dict = {"status": "ok", "pid": os.getpid()}
            if liveness is not None:
                age = liveness.age()
                body["last_progress_seconds_ago"] = round(age, 3)
                if age > stale_after_s:
                    return answer(
                        start_response,
                        "503 Service Unavailable",
                        {
                            **body,
                            "status": "stalled",
                            "reason": f"the {liveness.name}'s main loop made no progress for {age:.0f} s "
                            f"(healthz_stale_seconds {stale_after_s:g})",
                        },
                    )
            return answer(start_response, "200 OK", body)
        if path == "/readyz" and readiness is not None:
            problem = readiness()
            if problem:
                return answer(start_response, "503 Service Unavailable", {"status": "unavailable", "reason": problem})
            return answer(start_response, "200 OK", {"status": "ready"})
        return metrics_app(environ, start_response)

    return app


def check_free(host: str, port: int, who: str, flag: str = "--metrics-port") -> None:
    """Whether `serve` could bind here now (as it binds): for processes that serve later, on ports derived from
    this one, so that a port taken is one line before they start."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot serve the metrics of {who} on {host}:{port} ({exc.strerror or exc}): "
                f"pass a {flag} with the ports after it free too"
            ) from None


def serve(
    host: str,
    port: int,
    registry: Optional[CollectorRegistry] = None,
    *,
    flag: str = "--metrics-port",
    liveness: Optional[Heartbeat] = None,
    stale_after_s: float = 60.0,
    readiness: Optional[Callable[[], Optional[str]]] = None,
):
    """Serve `registry` (default: this process's default registry) and the probes on a daemon thread; returns
    (server, thread)."""
    app = probes_app(make_wsgi_app(registry or REGISTRY), liveness, stale_after_s, readiness)
    try:
        server = make_server(host, port, app, _Server6 if ":" in host else _Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise UserError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): pass a free port with {flag}"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True)
    thread.start()
    log.info("metrics.serving", url=f"http://{host}:{port}/metrics")
    return server, thread
