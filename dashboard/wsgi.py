"""The dashboard as a WSGI application for servers other than `pypi-pulse serve`: `pypi_pulse.dashboard.wsgi:app`.

Settings come from `PYPI_PULSE_*` variables and `PYPI_PULSE_CONFIG` (a TOML file), as for every command, e.g.

    PYPI_PULSE_SINK=postgresql://pulse@db/pulse PYPI_PULSE_DATA_DIR=/var/lib/pypi-pulse \\
        gunicorn -w 4 --threads 4 -b 0.0.0.0:8050 pypi_pulse.dashboard.wsgi:app

Each worker that imports this module builds its own app (connections, caches, threads); do not preload it into
a parent process (gunicorn's --preload) that then forks. The shared files in the data directory (session secret,
sessions, sign-in throttle) are created here if missing, safely when several workers start at once.
"""

from __future__ import annotations

from pypi_pulse import logs
from pypi_pulse.config import load_settings
from pypi_pulse.dashboard.app import create_app
from pypi_pulse.dashboard.server import prepare_shared_state

settings = load_settings()
logs.setup(settings.log_level, settings.log_format)
prepare_shared_state(settings)
app = create_app(settings).server
