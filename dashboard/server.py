"""Running the dashboard on a production WSGI server: gunicorn where it is installed, waitress otherwise.

gunicorn runs `serve_workers` processes of `serve_threads` threads each, so that one slow query or one busy
interpreter does not hold up every viewer; it is driven from here (a `BaseApplication`), not from its own command
line, so that `serve`'s flags and settings apply unchanged. Everything shared between the processes is prepared
once, in the parent, before any worker starts: the session secret (one file: a cookie signed by one worker must be
accepted by the others), the sessions and sign-in throttle databases. Each worker then builds the app itself
(`create_app`), after the fork, so that its sink connections and background threads are its own.

waitress (pure Python, also on Windows) serves from one process with `serve_threads` threads.
"""

from __future__ import annotations

import importlib.util
import math
import signal
import sys
from collections.abc import Callable

from pypi_pulse.config import Settings
from pypi_pulse.errors import UserError


def server_name(settings: Settings) -> str:
    """Which server `serve` will run: the setting `serve_server`, where `auto` is gunicorn if it can run here."""
    from pypi_pulse import extras

    wanted = settings.serve_server
    if wanted == "gunicorn":
        if sys.platform == "win32":
            raise UserError("gunicorn does not run on Windows: set serve_server to auto or waitress")
        extras.require("server")
    usable = sys.platform != "win32" and extras.missing_module("server") is None
    if wanted == "waitress" or not usable:
        if importlib.util.find_spec("waitress") is None:
            raise UserError("serve needs waitress or gunicorn: pip install 'pypi-pulse[server]'")
        return "waitress"
    return "gunicorn"


def prepare_shared_state(settings: Settings) -> None:
    """Create what every worker shares, once, before any exists (creating it in several at once would race)."""
    from pypi_pulse.dashboard.auth import SESSION_LIFETIME, load_or_create_secret
    from pypi_pulse.dashboard.sessions import SessionStore
    from pypi_pulse.dashboard.throttle import THROTTLE_FILE, SignInThrottle

    load_or_create_secret(settings.data_dir)
    SessionStore(settings.data_dir, SESSION_LIFETIME.total_seconds())
    SignInThrottle(settings.data_dir / THROTTLE_FILE)


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(settings: Settings, on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C or SIGTERM; `on_ready(server name)` is called once it is about to listen."""
    name = server_name(settings)
    prepare_shared_state(settings)
    if name == "gunicorn":
        _run_gunicorn(settings, on_ready)
    else:
        _run_waitress(settings, on_ready)


def _run_gunicorn(settings: Settings, on_ready: Callable[[str], None]) -> None:
    from gunicorn.app.base import BaseApplication

    from pypi_pulse.dashboard.app import create_app

    quiet = settings.log_level not in ("debug", "info")
    options = {
        "bind": [bind_address(settings.host, settings.port)],
        "workers": settings.serve_workers,
        "threads": settings.serve_threads,
        "worker_class": "gthread",
        "graceful_timeout": math.ceil(settings.serve_stop_seconds),  # whole seconds only
        "loglevel": "warning" if quiet else settings.log_level,
        "accesslog": "-" if settings.log_level == "debug" else None,
        "errorlog": "-",
        "proc_name": "pypi-pulse-serve",
        "preload_app": False,  # each worker builds its own app, after the fork
        # gunicorn's own cap (1 MiB), not its 8 KiB default: the API answers over-long names and parameters
        # itself, with a JSON 400 that says which one (tests/faults/test_hostile_requests.py)
        "limit_request_line": 0,
    }

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings).server

    on_ready("gunicorn")
    Gunicorn().run()  # gunicorn's arbiter handles SIGINT (quick stop) and SIGTERM (graceful, serve_stop_seconds)


def _run_waitress(settings: Settings, on_ready: Callable[[str], None]) -> None:
    from waitress import create_server

    from pypi_pulse.dashboard.app import create_app

    app = create_app(settings).server
    server = create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.serve_threads,
        ident="pypi-pulse",
        channel_timeout=60,
        clear_untrusted_proxy_headers=True,
    )

    def stop(*_):  # also when started with SIGINT ignored (a background job), and on SIGTERM
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    on_ready("waitress")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
