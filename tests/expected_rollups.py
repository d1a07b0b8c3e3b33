"""Independent expectations for the daily rollups (tests only).

Written apart from dataflow/parse.py and dataflow/clock.py, straight from the issue's definition, so that tests
compare the pipeline with a second implementation: mirrors count only in `with_mirrors`; every other breakdown
excludes them; NULL stays NULL (None); Python minor = first two numeric components; systems other than
Darwin/Linux/Windows are `other`; a country code that is not two capital letters is `ZZ` (any two capitals are
kept as logged, assigned by ISO 3166 or not); names are PEP 503 normalised.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime

MIRRORS = {"bandersnatch", "z3c.pypimirror", "Artifactory", "devpi"}
_CODE = re.compile(r"[A-Z]{2}")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def minor(py):
    m = re.match(r"^(\d+)\.(\d+)", py or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def expected_daily(events) -> Counter:
    """(day, project, dimension, category) -> downloads, for events given as dicts with numeric timestamps."""
    out: Counter = Counter()
    for e in events:
        day, p = day_of(e["timestamp"]), norm(e.get("project") or e["file"]["project"])
        d = e.get("details") or {}
        inst = (d.get("installer") or {}).get("name")
        out[(day, p, "with_mirrors", None)] += 1
        if inst in MIRRORS:
            continue
        f = e.get("file") or {}
        system = (d.get("system") or {}).get("name")
        cc = e.get("country_code")
        mi = minor(d.get("python"))
        for dim, cat in (
            ("overall", None),
            ("installer", inst),
            ("python_minor", mi),
            ("python_major", mi.split(".")[0] if mi else None),
            ("system", system if system in (None, "Darwin", "Linux", "Windows") else "other"),
            ("country", cc if isinstance(cc, str) and _CODE.fullmatch(cc) else "ZZ"),
            ("cpu", d.get("cpu")),
            ("file_type", f.get("type")),
            ("version", f.get("version")),
            ("ci", "true" if d.get("ci") else None),
        ):
            out[(day, p, dim, cat)] += 1
    return out


def expected_totals(daily: Counter) -> Counter:
    out: Counter = Counter()
    for (day, _p, dim, cat), n in daily.items():
        out[(day, dim, cat)] += n
    return out


def stored_daily(sink) -> Counter:
    rows = sink.history_query("SELECT day, project, dimension, category, downloads FROM daily")
    return Counter({(d, p, dim, None if c == "" else c): int(n) for d, p, dim, c, n in rows})


def stored_totals(sink) -> Counter:
    rows = sink.history_query("SELECT day, dimension, category, downloads FROM daily_totals")
    return Counter({(d, dim, None if c == "" else c): int(n) for d, dim, c, n in rows})


def totals_of(counts: dict) -> Counter:
    """The all-project `daily_totals` that (day, project, dimension, category) counts add up to."""
    out: Counter = Counter()
    for (day, _p, dim, cat), n in counts.items():
        out[(day, dim, cat)] += n
    return out


PROJECTS = ["Zope.Interface", "zope_interface", "zope-interface", "requests", "Django", "numpy", "pulse-tail-000042"]
INSTALLERS = ["pip", "pip", "pip", "uv", "poetry", None, "bandersnatch", "devpi", "Artifactory", "z3c.pypimirror"]
PYTHONS = ["3.12.1", "3.11.9", "3.10rc1", "2.7.18", None, "3.13"]
SYSTEMS = ["Linux", "Linux", "Windows", "Darwin", "FreeBSD", None]
COUNTRIES = ["US", "US", "DE", "GB", None, "XX"]


def make_event(rng: random.Random, ts: float) -> dict:
    """One event in the BigQuery row shape with a mix of mirrors and null fields."""
    project = rng.choice(PROJECTS)
    e = {
        "timestamp": ts,
        "country_code": rng.choice(COUNTRIES),
        "project": project,
        "file": {
            "project": project,
            "version": rng.choice(["1.0", "2.0", None]),
            "type": rng.choice(["bdist_wheel", "bdist_wheel", "sdist", None]),
        },
    }
    if rng.random() < 0.1:
        e["details"] = None  # unknown user agent
    else:
        inst = rng.choice(INSTALLERS)
        system = rng.choice(SYSTEMS)
        e["details"] = {
            "installer": None if inst is None else {"name": inst, "version": "1"},
            "python": rng.choice(PYTHONS),
            "system": None if system is None else {"name": system},
            "cpu": rng.choice(["x86_64", "aarch64", None]),
            "ci": rng.choice([True, None, False]),
        }
    return e
