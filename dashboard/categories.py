"""The package → category map shipped with the dashboard (data/categories.csv; see docs/categories.md)."""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

from pypi_pulse.names import normalize


@lru_cache(maxsize=1)
def category_map() -> dict[str, str]:
    """{normalised project: category}; one category per project, the one it is mostly used for."""
    text = resources.files("pypi_pulse.dashboard").joinpath("data/categories.csv").read_text()
    return {normalize(r["project"]): r["category"].strip() for r in csv.DictReader(text.splitlines())}
