"""Callback inputs as the callbacks need them, whatever the browser (or a hand-made request) sent.

Dash passes each property's JSON value straight through: a cleared date picker sends None, and anyone signed in can
post any JSON to /_dash-update-component. Every callback reads its inputs through these functions, so that a
missing or wrong-typed value becomes "nothing chosen" (and the callback shows its empty state) instead of an
exception and a 500, and a list is cut to the number of series a chart may show.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Optional, TypeVar

from pypi_pulse.dashboard.figures import THEMES

T = TypeVar("T")


def theme(value: object) -> str:
    return value if isinstance(value, str) and value in THEMES else "light"


def text(value: object) -> Optional[str]:
    """A non-empty string, stripped; None for anything else."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def texts(value: object, limit: Optional[int] = None) -> list[str]:
    """The distinct non-empty strings of a list (or a single string), in order, at most `limit`."""
    items = value if isinstance(value, list) else [value]
    out = list(dict.fromkeys(s for s in map(text, items) if s is not None))
    return out[:limit]


def choice(value: object, allowed: Iterable[T]) -> Optional[T]:
    """`value` if it is one of `allowed` (compared only among hashable values of the same type), else None."""
    try:
        hash(value)
    except TypeError:
        return None
    return next((a for a in allowed if type(a) is type(value) and a == value), None)


def choices(value: object, allowed: Iterable, limit: int) -> list:
    items = value if isinstance(value, list) else [value]
    allowed = list(allowed)
    out = [c for c in (choice(v, allowed) for v in items) if c is not None]
    return list(dict.fromkeys(out))[:limit]


def day(value: object) -> Optional[str]:
    """A 'YYYY-MM-DD' day from what a date picker sends (a date, or a date and time); None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value).date().isoformat()
    except ValueError:
        return None


def dict_value(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def first_point(event: object) -> dict:
    """The first point of a Plotly click or hover event, or {}."""
    points = dict_value(event).get("points")
    if isinstance(points, list) and points and isinstance(points[0], dict):
        return points[0]
    return {}


# PEP 508's project name: what PyPI accepts, so nothing else can name a package with downloads
_PROJECT_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def bounded_int(value: Optional[str], lo: int, hi: int) -> Optional[int]:
    """The whole number `value` spells if it lies in [lo, hi], else None: never an exception, however long the
    digits (int() refuses strings of more than 4,300 digits with a ValueError)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > len(str(hi)):
        return None
    n = int(value)
    return n if lo <= n <= hi else None


def project_name_problem(name: str, max_chars: int) -> Optional[str]:
    """Why `name` cannot be a PyPI project name (None: it can), in words for an error message. Checked before a
    name is normalised or looked up, so an odd or huge string costs nothing (normalised names are cached)."""
    if len(name) > max_chars:
        return f"package names are at most {max_chars} characters (max_name_chars), got {len(name)}"
    if not _PROJECT_NAME.match(name):
        return f"{name!r} is not a package name: letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
    return None


def packages(value: object, limit: int, max_chars: int) -> list[str]:
    """The valid package names of a dropdown's value, at most `limit`."""
    return [n for n in texts(value) if project_name_problem(n, max_chars) is None][:limit]
