"""Real reference figures that make synthetic traffic look like PyPI's (shipped in pypi_pulse/data)."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Optional


@dataclass(frozen=True)
class Weighted:
    values: tuple
    cum_weights: tuple


def _weighted(pairs) -> Weighted:
    values, weights = zip(*pairs)
    return Weighted(tuple(values), tuple(itertools.accumulate(weights)))


def _data(name: str):
    return resources.files("pypi_pulse") / "data" / name


@cache
def packages() -> Weighted:
    """The 15,000 most downloaded projects, weighted by their 30-day downloads."""
    with _data("top-pypi-packages-30d.csv").open() as f:
        rows = [(r["project"], int(r["download_count"])) for r in csv.DictReader(f)]
    return _weighted(rows)


# PyPI's long tail (shared/known-facts.md): the top 15,000 projects hold ~77% of downloads, the other ~23% are
# spread over ~585,000 more. Tail project k (0-based) has weight (k + TAIL_FIRST_RANK) ** -TAIL_EXPONENT: a gentle
# power law, chosen so that 66,000 events/s touch ~19,000 distinct projects in a second, as PyPI's do
# (benchmarks/distinct_projects.py measures it). The tail is not ranked below the named projects: at these
# shares its average project is a little above the 15,000th's 30-day count, which the figures imply.
TAIL_SHARE = 0.23
TAIL_PROJECTS = 585_000
TAIL_EXPONENT = 0.8
TAIL_FIRST_RANK = 15_001


def tail_name(k: int) -> str:
    """The deterministic name of tail project k (0 <= k < TAIL_PROJECTS)."""
    return f"pulse-tail-{k:06d}"


_TAIL_A = TAIL_FIRST_RANK ** (1 - TAIL_EXPONENT)
_TAIL_SPAN = (TAIL_FIRST_RANK + TAIL_PROJECTS) ** (1 - TAIL_EXPONENT) - _TAIL_A


def tail_index(u: float) -> int:
    """The tail project a uniform draw u in [0, 1) picks, by the inverse of the power law's (continuous) CDF."""
    k = int((_TAIL_A + u * _TAIL_SPAN) ** (1 / (1 - TAIL_EXPONENT))) - TAIL_FIRST_RANK
    return min(max(k, 0), TAIL_PROJECTS - 1)


def tail_weights():
    """Each tail project's probability among tail draws (numpy), as `tail_index` draws them."""
    import numpy as np

    ranks = np.arange(TAIL_FIRST_RANK, TAIL_FIRST_RANK + TAIL_PROJECTS + 1, dtype=float)
    edges = (ranks ** (1 - TAIL_EXPONENT) - _TAIL_A) / _TAIL_SPAN  # the CDF at each project's lower edge
    return np.diff(np.clip(edges, 0.0, 1.0))


@cache
def measured_country_shares() -> tuple[tuple[str, float], ...]:
    """The measured top countries and their share of all downloads, in percent (`country-share-2026-08.csv`)."""
    with _data("country-share-2026-08.csv").open() as f:
        return tuple((r["country_code"], float(r["share_pct"])) for r in csv.DictReader(f))


def measured_countries() -> list[str]:
    return [c for c, _ in measured_country_shares()]


@cache
def countries() -> Weighted:
    """Every country's share of downloads, for the synthetic stream and its history alike: the measured top 10
    (`country-share-2026-08.csv`), the rest of the world in proportion to its internet users, and a few downloads
    of unknown origin (None: BigQuery's country_code is null for some rows). How the rest was derived, and from
    what: `producer/country_mix.py`."""
    pairs: list[tuple[Optional[str], float]] = list(measured_country_shares())
    with _data("country-share-rest.csv").open() as f:
        pairs += [(r["country_code"], float(r["share_pct"])) for r in csv.DictReader(f)]
    pairs.append((None, 100.0 - sum(s for _, s in pairs)))
    return _weighted(pairs)


PYTHONS = _weighted(
    [
        ("3.12.7", 14),
        ("3.12.12", 10),
        ("3.11.11", 12),
        ("3.11.14", 9),
        ("3.10.16", 10),
        ("3.10.19", 6),
        ("3.13.9", 11),
        ("3.13.2", 3),
        ("3.9.23", 8),
        ("3.8.20", 4),
        ("3.14.0", 3),
        ("3.7.17", 1.2),
        ("2.7.18", 0.8),
        (None, 2),
    ]
)
INSTALLERS = _weighted(
    [
        (("pip", "25.3"), 52),
        (("pip", "24.0"), 10),
        (("uv", "0.9.11"), 16),
        (("poetry", "2.2.1"), 5),
        (("pdm", "2.26.1"), 1),
        (("pipenv", "2025.0.4"), 0.6),
        (("requests", "2.32.5"), 3),
        (("bandersnatch", "6.6.0"), 1.5),
        (("Browser", None), 0.5),
        (("setuptools", "80.9.0"), 0.4),
        (("devpi", "6.2.0"), 0.3),
        (("Artifactory", None), 0.7),
        (None, 8),
    ]
)
SYSTEMS = _weighted(
    [
        (("Linux", "6.8.0-1015-aws"), 72),
        (("Linux", "5.15.0-139-generic"), 10),
        (("Windows", "10"), 8),
        (("Windows", "11"), 2),
        (("Darwin", "24.6.0"), 6),
        (("FreeBSD", "14.1-RELEASE"), 0.3),
        (None, 1.7),
    ]
)
CPUS = _weighted([("x86_64", 78), ("aarch64", 11), ("AMD64", 8), ("arm64", 2.5), ("i686", 0.3), (None, 0.2)])
DISTROS = _weighted(
    [
        (("Ubuntu", "24.04", "noble"), 35),
        (("Ubuntu", "22.04", "jammy"), 20),
        (("Debian GNU/Linux", "12", "bookworm"), 20),
        (("Amazon Linux", "2023", None), 10),
        (("Alpine Linux", "3.22.2", None), 5),
        (None, 10),
    ]
)
FILE_TYPES = _weighted([("bdist_wheel", 91), ("sdist", 9)])
CI = _weighted([(True, 30), (None, 70)])
