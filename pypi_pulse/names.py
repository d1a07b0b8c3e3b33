"""PEP 503 project-name normalisation, cached because the hot path sees the same few thousand names."""

from __future__ import annotations

import re

_RUNS = re.compile(r"[-_.]+")
_cache: dict[str, str] = {}


def normalize(name: str) -> str:
    """`zope.interface`, `Zope_Interface` and `zope-interface` are one project."""
    norm = _cache.get(name)
    if norm is None:
        norm = _RUNS.sub("-", name).lower()
        if len(_cache) < 2_000_000:  # bounded: a hostile stream of unique names cannot exhaust memory
            _cache[name] = norm
    return norm
