"""The rollup dimensions and their category rules, defined once for Python and for BigQuery SQL.

Every count pypi-pulse stores is (day, project, dimension, category). What the dimensions are, which event field
each reads and how a field's value becomes a category is written here only: the dataflow's parsers, the backfill,
the sink, the synthetic history and the BigQuery aggregate query (`producer/bigquery_query.py`) all take it from this
table. Each dimension carries its rule twice, as a Python function and as the BigQuery expression that computes
the same category, side by side so that they are changed together; tests/producer/test_rules_agree.py runs the
generated SQL on the BigQuery emulator over awkward rows and checks it gives what the Python rules give.

Where a rule is a pattern, both sides use the same pattern text (RE2 and Python's `re` agree on the subset used).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from pypi_pulse.countries import country_or_unknown
from pypi_pulse.event_fields import paths

# Installers that mirror PyPI rather than install from it: their downloads count only in `with_mirrors`.
MIRROR_INSTALLERS = frozenset({"bandersnatch", "z3c.pypimirror", "Artifactory", "devpi"})
# Systems kept by name; any other named system is counted as OTHER_SYSTEM, a missing one stays null.
NAMED_SYSTEMS = ("Darwin", "Linux", "Windows")
OTHER_SYSTEM = "other"
CI_CATEGORY = "true"  # `details.ci` is true or null in the table; null and false are not counted as CI

# `details.python` -> "major.minor": two runs of ASCII digits at the start (`3.12.1` -> 3.12, `3.9rc1` -> 3.9).
PYTHON_MINOR_PATTERN = r"^([0-9]+[.][0-9]+)"
PYTHON_MAJOR_PATTERN = r"^([0-9]+)[.][0-9]+"
# A country code is counted as logged when it is two ASCII capitals (see pypi_pulse/countries.py), else `ZZ`.
COUNTRY_PATTERN = r"^[A-Z]{2}$"
# PEP 503: runs of `-`, `_`, `.` are one `-`, and case does not matter (pypi_pulse/names.py applies it in Python).
NAME_SEPARATORS_PATTERN = r"[-_.]+"

_MINOR = re.compile(PYTHON_MINOR_PATTERN)
_minor_cache: dict[str, Optional[str]] = {}


def python_minor(v: Optional[str]) -> Optional[str]:
    """First two numeric components of `details.python` (`3.12.1` -> `3.12`), None if there are not two."""
    if v is None:
        return None
    m = _minor_cache.get(v)
    if m is None and v not in _minor_cache:
        found = _MINOR.match(v)
        m = found.group(1) if found else None
        if len(_minor_cache) < 100_000:  # a bounded cache: the distinct values are few, hostile ones are not
            _minor_cache[v] = m
    return m


def python_major(v: Optional[str]) -> Optional[str]:
    minor = python_minor(v)
    return None if minor is None else major_of_minor(minor)


def major_of_minor(minor: str) -> str:
    return minor.split(".", 1)[0]


def system_category(name: Optional[str]) -> Optional[str]:
    return name if name in NAMED_SYSTEMS else (None if name is None else OTHER_SYSTEM)


def ci_category(ci: Optional[bool]) -> Optional[str]:
    return CI_CATEGORY if ci else None


def is_mirror(installer: Optional[str]) -> bool:
    return installer in MIRROR_INSTALLERS


def _same(v: Optional[str]) -> Optional[str]:
    return v


def _none(_v: object) -> None:
    return None


def _sql_str(s: str) -> str:
    if "'" in s or "\\" in s:
        raise ValueError(f"{s!r} cannot be a plain SQL string literal")
    return f"'{s}'"


_SYSTEM_SQL = (
    f"CASE WHEN details.system.name IN ({', '.join(map(_sql_str, NAMED_SYSTEMS))}) THEN details.system.name "
    f"WHEN details.system.name IS NULL THEN NULL ELSE {_sql_str(OTHER_SYSTEM)} END"
)


@dataclass(frozen=True)
class Dimension:
    """One dimension of the daily rollups.

    `field`: the event field its category is read from (a dotted path of `pypi_pulse.events.Download`), None for
    the per-project totals. `rule`: that field's value -> category. `sql`: the same rule as a BigQuery expression
    over the table's columns. `derived`: computed when a minute is sealed rather than stored per event as read.
    `folded`: fine detail that a small project's complete day keeps as one `other` row (sink/rollup.py).
    `mirrors`: mirror downloads count in it (only `with_mirrors`)."""

    name: str
    field: Optional[str]
    rule: Callable
    sql: str
    derived: bool = False
    folded: bool = False
    mirrors: bool = False


# In the order the sink lists them: the derived ones, then those stored per event.
DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("overall", None, _none, "NULL", derived=True),
    Dimension("with_mirrors", None, _none, "NULL", derived=True, mirrors=True),
    Dimension(
        "python_major",
        "details.python",
        python_major,
        f"REGEXP_EXTRACT(details.python, r'{PYTHON_MAJOR_PATTERN}')",
        derived=True,
    ),
    Dimension(
        "country",
        "country_code",
        country_or_unknown,
        f"IF(REGEXP_CONTAINS(country_code, r'{COUNTRY_PATTERN}'), country_code, 'ZZ')",
        folded=True,
    ),
    Dimension("installer", "details.installer.name", _same, "details.installer.name", folded=True),
    Dimension(
        "python_minor", "details.python", python_minor, f"REGEXP_EXTRACT(details.python, r'{PYTHON_MINOR_PATTERN}')"
    ),
    Dimension("system", "details.system.name", system_category, _SYSTEM_SQL),
    Dimension("cpu", "details.cpu", _same, "details.cpu", folded=True),
    Dimension("file_type", "file.type", _same, "file.type", folded=True),
    Dimension("version", "file.version", _same, "file.version", folded=True),
    Dimension("ci", "details.ci", ci_category, f"IF(details.ci, {_sql_str(CI_CATEGORY)}, NULL)", folded=True),
)
BY_NAME = {d.name: d for d in DIMENSIONS}
NAMES = tuple(d.name for d in DIMENSIONS)
DERIVED = tuple(d.name for d in DIMENSIONS if d.derived)
STORED = tuple(d.name for d in DIMENSIONS if not d.derived)
FOLDED = tuple(d.name for d in DIMENSIONS if d.folded)
PER_PROJECT = tuple(d.name for d in DIMENSIONS if d.field is None)  # one count per project, no category

# The details-derived categories of an event, in the order the dataflow keeps them as one tuple per distinct
# `details` record. The order is part of the dataflow's recovery snapshots: append, never reorder.
VIEW_DIMS = ("installer", "python_minor", "python_major", "system", "cpu", "ci")
# The `details` fields a view is computed from, in the order `view` takes them.
VIEW_FIELDS = ("details.installer.name", "details.python", "details.system.name", "details.cpu", "details.ci")
FILE_DIMS = ("file_type", "version")
_VIEW_PLAN = tuple((BY_NAME[d].rule, VIEW_FIELDS.index(BY_NAME[d].field)) for d in VIEW_DIMS)
assert set(VIEW_DIMS) | set(FILE_DIMS) | set(PER_PROJECT) | {"country"} == set(NAMES)
assert all((BY_NAME[d].field or "").startswith("file.") for d in FILE_DIMS)

# The event fields the rules read, with the project (top-level, else `file.project`) and the timestamp, in the
# event's declaration order.
READ_FIELDS = tuple(p for p in paths() if p in {"timestamp", "project", "file.project", *(d.field for d in DIMENSIONS)})


def view(
    installer: Optional[str], python: Optional[str], system: Optional[str], cpu: Optional[str], ci: Optional[bool]
) -> tuple:
    """The VIEW_DIMS categories of one `details` record's fields (VIEW_FIELDS order)."""
    fields = (installer, python, system, cpu, ci)
    return tuple(rule(fields[i]) for rule, i in _VIEW_PLAN)


def field_value(row: Optional[dict], path: str):
    """A dotted path's value in a nested row as BigQuery returns it (a null record makes every field under it null)."""
    for part in path.split("."):
        if row is None:
            return None
        row = row.get(part)
    return row


def project_of(row: dict) -> Optional[str]:
    """The project an event counts for: the top-level column, else `file.project` (the table fills both)."""
    return row.get("project") or field_value(row, "file.project")


def categories(row: dict) -> list[tuple[str, Optional[str]]]:
    """Every (dimension, category) one event counts in, by the rules above: the reference the fast paths and the
    SQL are tested against. A mirror download counts in `with_mirrors` only."""
    mirror = is_mirror(field_value(row, "details.installer.name"))
    return [
        (d.name, d.rule(field_value(row, d.field)) if d.field else None) for d in DIMENSIONS if d.mirrors or not mirror
    ]


# ---- SQL --------------------------------------------------------------------------------------------------------
def sql_project(column: str) -> str:
    """PEP 503 normalisation of a project column in BigQuery (what pypi_pulse.names.normalize does in Python)."""
    return f"LOWER(REGEXP_REPLACE({column}, r'{NAME_SEPARATORS_PATTERN}', '-'))"


def sql_is_mirror(mirrors_param: str) -> str:
    return f"IFNULL(details.installer.name IN UNNEST(@{mirrors_param}), FALSE)"


def sql_category_columns() -> list[str]:
    """`expression AS dimension` for every dimension with a category."""
    return [f"{d.sql} AS {d.name}" for d in DIMENSIONS if d.field is not None]


def sql_category_case(dimension_column: str) -> str:
    """The category of a row of a dimension-unnested query: a CASE over the per-dimension columns."""
    whens = " ".join(f"WHEN '{d.name}' THEN {d.name}" for d in DIMENSIONS if d.field is not None)
    return f"CASE {dimension_column} {whens} END"
