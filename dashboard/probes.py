"""`/healthz` and `/readyz` for load balancers and orchestrators, answered without a session.

`/healthz` says the server process answers (and which worker process did: several share one port); `/readyz` says
whether it can do its job, that is read the sink now, with a trivial query (503 and the reason otherwise), so that a
balancer stops sending traffic to a server whose database is away without restarting it.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify

from pypi_pulse.sink.read_pool import ReadPool

WORKER_HEADER_ENV = "PULSE_TEST_WORKER_HEADER"  # tests set it to see which worker process answered each request


def install_probes(server: Flask, pool: ReadPool) -> None:
    if os.environ.get(WORKER_HEADER_ENV):

        @server.after_request
        def served_by(response):
            response.headers["X-Pulse-Worker"] = str(os.getpid())
            return response

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok", pid=os.getpid()), 200, {"Cache-Control": "no-store"}

    @server.get("/readyz")
    def readyz():
        problem = pool.check()
        if problem:
            return jsonify(status="unavailable", reason=problem), 503, {"Cache-Control": "no-store"}
        return jsonify(status="ready"), 200, {"Cache-Control": "no-store"}
