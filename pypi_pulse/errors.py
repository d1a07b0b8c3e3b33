"""Errors a user can fix: the CLI prints them as one line and exits 2, never a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


class UserError(Exception):
    """Something the user can fix (bad flag, missing file, unreachable broker); the message says how."""


class EmptySink(UserError):
    """The sink is a database, but pypi-pulse has not created its tables there yet (the dataflow does)."""


def usage_error_types() -> tuple[type[click.ClickException], ...]:
    """The exceptions of a command-line usage error. Typer >= 0.29 raises those of the click it bundles
    (typer._click), which are not click's own but have the same interface (typed here as click's); older typer
    raised click's. The CLI catches both, so that neither escapes as a traceback."""
    import importlib

    found = []
    for name in ("typer._click", "click"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)
