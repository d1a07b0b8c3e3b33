"""The package → category map shipped with pypi-pulse (data/categories.csv; see docs/categories.md).

It lives in the core package because both the dashboard (the Categories view) and the sink (which summarises
complete days by category, sink/summaries.py) read it.
"""

from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from importlib import resources

from pypi_pulse.names import normalize


@lru_cache(maxsize=1)
def _text() -> str:
    return resources.files("pypi_pulse").joinpath("data/categories.csv").read_text()


@lru_cache(maxsize=1)
def category_map() -> dict[str, str]:
    """{normalised project: category}; one category per project, the one it is mostly used for."""
    return {normalize(r["project"]): r["category"].strip() for r in csv.DictReader(_text().splitlines())}


@lru_cache(maxsize=1)
def map_digest() -> str:
    """Identifies this version of the map: summaries made with another version are recomputed, not trusted."""
    return hashlib.sha256(_text().encode()).hexdigest()[:16]
