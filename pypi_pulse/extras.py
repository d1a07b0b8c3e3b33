"""Optional parts of the install (pyproject's extras) and the one-line error when a command needs one that is missing.

The base install is what `pypi-pulse up` needs on its embedded defaults; PostgreSQL, BigQuery and gunicorn come
with `pypi-pulse[postgres]`, `[bigquery]` and `[server]`. Without this check a missing extra shows up as an
ImportError traceback from deep inside a command, or, under `up`, as a child that dies and restarts; with it, the
command stops before it starts anything and says which extra to install (exit 2, like every `UserError`).
"""

from __future__ import annotations

import importlib

from pypi_pulse.errors import UserError

# extra -> (what it enables, the modules it must make importable). pyproject.toml lists the distributions.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "postgres": ("a PostgreSQL sink", ("psycopg", "psycopg_pool")),
    "bigquery": ("the BigQuery source", ("google.cloud.bigquery",)),
    "server": ("the gunicorn server", ("gunicorn",)),
}


def missing_module(extra: str) -> str | None:
    """The first module of `extra` that cannot be imported, or None when the extra is installed."""
    for module in EXTRAS[extra][1]:
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def require(extra: str) -> None:
    """Raise a `UserError` naming the extra to install if any of its modules is missing."""
    missing = missing_module(extra)
    if missing is not None:
        what = EXTRAS[extra][0]
        raise UserError(
            f"{what} needs the {extra} extra (module {missing} is not installed): pip install 'pypi-pulse[{extra}]'"
        )


def sink_extra(url: str) -> str | None:
    """The extra a sink URL needs, if any (SQLite is in the base install)."""
    return "postgres" if url.startswith(("postgresql://", "postgres://")) else None


def source_extra(source: str) -> str | None:
    """The extra a producer or backfill source needs, if any (synthetic and file replays are in the base install)."""
    return "bigquery" if source == "bigquery" else None


def require_for(*, sink: str | None = None, source: str | None = None) -> None:
    """Check the extras of the sink and source a command is about to open."""
    for extra in (sink_extra(sink) if sink else None, source_extra(source) if source else None):
        if extra is not None:
            require(extra)
