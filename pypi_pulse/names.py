"""PEP 503 project-name normalisation, cached because the hot path sees the same few thousand names."""

from __future__ import annotations

import re
from functools import lru_cache

_RUNS = re.compile(r"[-_.]+")


# Least-recently-used, and small: PyPI's long tail (hundreds of thousands of names a day, each seen a few times)
# would otherwise fill the cache for hours, and a long-running dataflow's memory with it (benchmarks/memory.py
# measured +196 MiB in 10 minutes with a 2,000,000-entry cache filled in arrival order); the few thousand names that
# carry most downloads stay cached.
@lru_cache(maxsize=65_536)
def normalize(name: str) -> str:
    """`zope.interface`, `Zope_Interface` and `zope-interface` are one project."""
    return _RUNS.sub("-", name).lower()
