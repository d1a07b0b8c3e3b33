"""The SQL of the BigQuery source and its parameters: which columns are read and which rows.

Each column read is billed for the whole day partition, so a query selects only the columns the pipeline's rules
read and always filters on `timestamp` (partition pruning); `--projects` filters on the clustering column, so
BigQuery reads (and bills) fewer blocks.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Optional

from pypi_pulse import rules
from pypi_pulse.errors import UserError
from pypi_pulse.event_fields import flat_name, nester
from pypi_pulse.events import BadTimestamp, parse_iso

if TYPE_CHECKING:
    from pypi_pulse.config import Settings

# The columns the pipeline uses (the fields its rules read), flat, named as files.py reads flat exports (so --export
# replays as file:PATH). The project is read from `file.project` only: the table's top-level `project` holds the
# same name, and each column read is billed for the whole day.
_READ = [f for f in rules.READ_FIELDS if f != "project"]
COLUMNS = {flat_name(f): f for f in _READ}
SAMPLE_SCALE = 1_000_000

# One flat result row (COLUMNS order) as the nested BigQuery row (only the columns read); nulls inside records are
# omitted, a record with nothing set is null.
event_dict = nester(_READ)


def parse_projects(value: Optional[str]) -> Optional[list[str]]:
    """`--projects a,B_c` → PEP 503 names; matched against the normalised column so any spelling works."""
    if not value:
        return None
    from pypi_pulse.names import normalize

    given = [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()]
    names = sorted({normalize(p) for p in given} | set(given))
    if not names:
        raise UserError("--projects is empty: pass names separated by commas, e.g. --projects requests,numpy")
    return names


def parse_bound(value: Optional[str], flag: str) -> Optional[float]:
    """An ISO date (midnight UTC) or time, as epoch seconds."""
    if not value:
        return None
    try:
        if len(value.strip()) == 10:
            d = dt.date.fromisoformat(value.strip())
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()
        return parse_iso(value)
    except (ValueError, BadTimestamp):
        raise UserError(f"{flag} {value!r} is not a date or time: use 2026-11-20 or 2026-11-20T12:00:00Z") from None


def time_range(lo: float, hi: float) -> list:
    """The `@lo`/`@hi` parameters of every query: [lo, hi) in epoch seconds, on the partitioning column."""
    from google.cloud import bigquery

    return [
        bigquery.ScalarQueryParameter("lo", "TIMESTAMP", dt.datetime.fromtimestamp(lo, dt.UTC)),
        bigquery.ScalarQueryParameter("hi", "TIMESTAMP", dt.datetime.fromtimestamp(hi, dt.UTC)),
    ]


def _table_ref(settings: Settings) -> str:
    t = settings.bigquery_table
    if "`" in t or not t.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(
            f"bigquery_table {t!r} (PYPI_PULSE_BIGQUERY_TABLE) is not a table id: use project.dataset.table"
        )
    return f"`{t}`"


_NORMALISED = rules.sql_project("file.project")


def _filters(settings: Settings, sample: bool = True) -> tuple[list[str], list]:
    """Partition filter always; clustering filter for --projects; deterministic --sample on the timestamp."""
    from google.cloud import bigquery

    where = ["timestamp >= @lo", "timestamp < @hi"]
    params: list = []
    projects = parse_projects(settings.projects)
    if projects:
        # on the clustering column itself (so BigQuery prunes blocks), as given and in PEP 503 form
        where.append("project IN UNNEST(@projects)")
        params.append(bigquery.ArrayQueryParameter("projects", "STRING", projects))
    if sample and settings.sample is not None and settings.sample < 1:
        # microseconds are uniform noise, so this keeps the fraction for every project, and the same rows on a re-read
        where.append(f"MOD(UNIX_MICROS(timestamp), {SAMPLE_SCALE}) < @sample")
        params.append(bigquery.ScalarQueryParameter("sample", "INT64", int(round(settings.sample * SAMPLE_SCALE))))
    return where, params


def rows_query(settings: Settings) -> tuple[str, list]:
    """The rows of a window in timestamp order (the caller adds its `time_range`), the columns named as COLUMNS."""
    where, params = _filters(settings)
    cols = ", ".join(f"{expr} AS {alias}" for alias, expr in COLUMNS.items())
    sql = f"SELECT {cols} FROM {_table_ref(settings)} WHERE {' AND '.join(where)} ORDER BY timestamp"
    return sql, params


def aggregates_query(settings: Settings) -> tuple[str, list]:
    """One scan of one day: every (project, dimension, category) count, with the dataflow's category rules (the
    dimensions and their SQL come from pypi_pulse.rules)."""
    from google.cloud import bigquery

    where, params = _filters(settings, sample=False)  # daily totals must be whole, never a sample
    params += [bigquery.ArrayQueryParameter("mirrors", "STRING", sorted(rules.MIRROR_INSTALLERS))]
    every = ", ".join(f"'{d}'" for d in rules.NAMES)
    with_mirrors = ", ".join(f"'{d.name}'" for d in rules.DIMENSIONS if d.mirrors)
    categories = ",\n    ".join(rules.sql_category_columns())
    sql = f"""
WITH base AS (
  SELECT {_NORMALISED} AS project,
    {rules.sql_is_mirror("mirrors")} AS mirror,
    {categories}
  FROM {_table_ref(settings)}
  WHERE {" AND ".join(where)} AND file.project IS NOT NULL AND file.project != ''
)
SELECT project, dimension, {rules.sql_category_case("dimension")} AS category,
  COUNT(*) AS downloads
FROM base, UNNEST(IF(mirror, [{with_mirrors}], [{every}])) AS dimension
GROUP BY project, dimension, category"""
    return sql, params
