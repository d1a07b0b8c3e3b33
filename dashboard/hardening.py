"""What every response of the dashboard server must carry or respect, whatever route produced it.

- Security headers: the pages may not be framed (clickjacking), scripts and styles come from this server only
  (Dash needs 'unsafe-eval' for its renderer and 'unsafe-inline' for its inline bootstrap script and the styles
  React sets), types are not sniffed, and no referrer leaves the site.
- A cap on request bodies (Flask's MAX_CONTENT_LENGTH: 413) and on Dash callback responses: a small request must
  not be able to make the server build and send megabytes.
- An unknown Dash asset path is a plain 404: Dash raises an exception for it, which Flask would log as a
  traceback of a few kilobytes on every anonymous request.
- Errors under /api are JSON (`{"error": ..., "status": ...}`), like the API's own, for scripts that parse them,
  and so is an unknown path there (Dash's catch-all route would answer it with the dashboard's page).
"""

from __future__ import annotations

import structlog
from dash.exceptions import DependencyException
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from pypi_pulse.dashboard.limits import WebLimits

log = structlog.get_logger("pypi_pulse.dashboard.hardening")

CALLBACK_PATH = "/_dash-update-component"
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
DRAIN_FACTOR = 4  # a refused body up to this many times max_request_bytes is read to its end, a larger one cut off
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def install_hardening(server: Flask, limits: WebLimits) -> None:
    server.config["MAX_CONTENT_LENGTH"] = limits.max_request_bytes

    @server.route("/api/<path:rest>")
    def _no_such_endpoint(rest: str):  # else Dash's catch-all route would answer with the dashboard's page
        raise NotFound("no such API endpoint: see /api/openapi.json")

    @server.errorhandler(DependencyException)
    def _unknown_asset(exc: DependencyException):
        return _error(NotFound(f"no such asset: {request.path}"))

    @server.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if isinstance(exc, RequestEntityTooLarge):
            _drain(limits.max_request_bytes * DRAIN_FACTOR)
        return _error(exc)

    @server.after_request
    def _guard(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path == CALLBACK_PATH and response.status_code == 200:
            size = response.calculate_content_length()
            if size is not None and size > limits.max_response_bytes:
                log.warning("callback response over the cap", bytes=size, cap=limits.max_response_bytes)
                too_big = jsonify(
                    error=f"this view would send {size:,} bytes, over the {limits.max_response_bytes:,}"
                    " byte cap (max_response_bytes): ask for fewer packages, countries or days",
                    status=400,
                )
                too_big.status_code = 400
                too_big.headers.update(SECURITY_HEADERS)
                return too_big
        return response


def _drain(most: int) -> None:
    """Read what is left of a refused body (up to `most` bytes) before answering: a server that closes a connection
    with unread bytes in it makes the kernel reset it, and the client loses the 413 it was about to read."""
    stream = request.environ.get("wsgi.input")
    left = min(request.content_length or 0, most)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        left -= len(chunk)


def _error(exc: HTTPException):
    """JSON for the API and for Dash's own endpoints (scripts read them); Werkzeug's page elsewhere."""
    if request.path.startswith(("/api/", "/_dash-")):
        response = jsonify(error=exc.description, status=exc.code)
        response.status_code = exc.code or 500
        for k, v in exc.get_headers():
            if k.lower() not in ("content-type", "content-length"):
                response.headers[k] = v
        return response
    return exc
