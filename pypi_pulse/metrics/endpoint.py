"""Starting a `/metrics` endpoint, with a fixable message when the address is taken."""

from __future__ import annotations

from typing import Optional

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from pypi_pulse.errors import UserError

log = structlog.get_logger(__name__)


def serve(host: str, port: int, registry: Optional[CollectorRegistry] = None, *, flag: str = "--metrics-port"):
    """Serve `registry` (default: this process's default registry) on a daemon thread; returns (server, thread)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry or REGISTRY)
    except OSError as exc:
        raise UserError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): pass a free port with {flag}") from None
    log.info("metrics.serving", url=f"http://{host}:{port}/metrics")
    return server, thread
