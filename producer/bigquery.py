"""Reading PyPI downloads from BigQuery without surprises on the bill.

`bigquery-public-data.pypi.file_downloads` is partitioned by day on `timestamp` and clustered by `project`: every
query bills the whole day partition for each column it reads, however narrow its time filter. So every query here
reads only the columns the pipeline uses, always filters on `timestamp` (partition pruning), is dry-run first (the
estimate is checked against the daily budget and logged), and runs with `maximum_bytes_billed` so BigQuery itself
refuses to bill more than the user allowed. What was billed is kept per UTC day in DATA_DIR so a restart does not
reset the budget, and is exported as Prometheus metrics.

Rows are loaded into the table in batches minutes after the downloads, so the incremental reader re-reads an
overlap window behind its watermark and removes what it already returned (multiset difference on the row content:
two identical downloads in the same microsecond stay two).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import orjson
import structlog
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from pypi_pulse import rules
from pypi_pulse.errors import UserError
from pypi_pulse.event_fields import flat_name, nester
from pypi_pulse.events import BadTimestamp, format_bigquery_ts, parse_iso

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    from pypi_pulse.config import Settings

log = structlog.get_logger(__name__)

SCOPES = ("https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform")
TIB = 2**40

BYTES_BILLED = PromCounter(
    "pypi_pulse_bigquery_bytes_billed", "Bytes BigQuery billed for pypi-pulse queries.", ["kind"]
)
QUERIES = PromCounter("pypi_pulse_bigquery_queries", "BigQuery queries run (dry runs excluded).", ["kind"])
COST_USD = PromCounter(
    "pypi_pulse_bigquery_estimated_cost_usd", "Estimated on-demand cost of the bytes billed.", ["kind"]
)
ESTIMATED = Gauge("pypi_pulse_bigquery_last_estimate_bytes", "Dry-run estimate of the last query.", ["kind"])
BUDGET_REMAINING = Gauge("pypi_pulse_bigquery_budget_remaining_bytes", "Bytes left in today's (UTC) BigQuery budget.")
ROWS_READ = PromCounter("pypi_pulse_bigquery_rows_read", "Rows returned by BigQuery (before de-duplication).")
ROWS_NEW = PromCounter("pypi_pulse_bigquery_rows_new", "Rows kept after removing overlap re-reads.")

# The columns the pipeline uses (the fields its rules read), flat, named as files.py reads flat exports (so --export
# replays as file:PATH). The project is read from `file.project` only: the table's top-level `project` holds the
# same name, and each column read is billed for the whole day.
_READ = [f for f in rules.READ_FIELDS if f != "project"]
COLUMNS = {flat_name(f): f for f in _READ}
SAMPLE_SCALE = 1_000_000
API_RETRY_S = 30.0  # transient API errors are retried this long (the client's default, 10 minutes, looks like a hang)


class BudgetExhausted(UserError):
    """Today's budget cannot pay for the next query."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} TB"


# ---- credentials and client ---------------------------------------------------------------------------------------
def make_client(settings: Settings) -> bigquery.Client:
    """A real BigQuery client from a key file, Application Default Credentials, or (emulators) no credentials."""
    import google.auth
    from google.api_core.client_options import ClientOptions
    from google.auth import exceptions as auth_exc
    from google.cloud import bigquery

    creds, cred_project = None, None
    if settings.credentials is not None:
        path = Path(settings.credentials).expanduser()
        if not path.is_file():
            raise UserError(f"credentials file {path} does not exist: pass a service-account JSON key to --credentials")
        try:
            creds, cred_project = _load_key(path)
        except (auth_exc.DefaultCredentialsError, ValueError, KeyError) as exc:
            raise UserError(
                f"credentials file {path} is not a usable Google key ({_one_line(exc)}): download a new "
                f"service-account JSON key, or drop --credentials to use `gcloud auth application-default login`"
            ) from None
    elif settings.bigquery_endpoint:
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials()
    else:
        try:
            creds, cred_project = google.auth.default(scopes=list(SCOPES))
        except auth_exc.DefaultCredentialsError:
            raise UserError(
                "no Google credentials found: run `gcloud auth application-default login`, set "
                "GOOGLE_APPLICATION_CREDENTIALS, or pass --credentials KEY.json"
            ) from None
    project = settings.billing_project or cred_project
    if not project:
        raise UserError(
            "no billing project: pass --billing-project YOUR_GCP_PROJECT (queries of the public PyPI "
            "table are billed to your project)"
        )
    options = ClientOptions(api_endpoint=settings.bigquery_endpoint) if settings.bigquery_endpoint else None
    return bigquery.Client(project=project, credentials=creds, client_options=options)


def _load_key(path: Path):
    """Only the two key types a user downloads (service account, gcloud user), never arbitrary external configs."""
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    info = json.loads(path.read_text())
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        creds = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
        return creds, info.get("project_id")
    if kind == "authorized_user":
        creds = user_credentials.Credentials.from_authorized_user_info(info, scopes=list(SCOPES))
        return creds, info.get("quota_project_id")
    raise ValueError(f"key type {kind!r} is not 'service_account' or 'authorized_user'")


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


def explain(exc: Exception, settings: Settings) -> UserError:
    """Turn a Google error into one line that says what to do."""
    from google.api_core import exceptions as api_exc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, auth_exc.RefreshError):
        return UserError(
            f"Google rejected the credentials ({_one_line(exc)}): run `gcloud auth application-default "
            f"login` again or create a new service-account key for --credentials"
        )
    if isinstance(exc, auth_exc.GoogleAuthError):
        return UserError(
            f"Google credentials failed ({_one_line(exc)}): check --credentials or run "
            f"`gcloud auth application-default login`"
        )
    details = [e for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)]
    reasons = {e.get("reason") for e in details}
    msg = " ".join(str(details[0].get("message") or "").split())[:300] if details else ""
    msg = msg or _one_line(exc)
    if "bytesBilledLimitExceeded" in reasons or "limit for bytes billed" in msg:
        return UserError(
            f"BigQuery refused a query above --max-bytes-per-query "
            f"({human_bytes(int(settings.max_bytes_per_query))}): raise it, or read less with --projects "
            f"or a shorter --start/--end range ({msg})"
        )
    if isinstance(exc, api_exc.Unauthorized):
        return UserError(
            f"BigQuery did not accept the credentials ({msg}): run `gcloud auth application-default "
            f"login` or pass a valid --credentials KEY.json"
        )
    if "billingNotEnabled" in reasons:
        return UserError(
            f"billing is not enabled on project {settings.billing_project or '(default)'}: enable "
            f"billing, or pass another --billing-project ({msg})"
        )
    if isinstance(exc, api_exc.Forbidden):
        return UserError(
            f"BigQuery denied the query ({msg}): give the account the BigQuery Job User role on the "
            f"billing project, or pass another --billing-project"
        )
    if isinstance(exc, api_exc.NotFound):
        return UserError(
            f"BigQuery could not find something the query needs ({msg}): check the billing project "
            f"and the table ({settings.bigquery_table})"
        )
    if isinstance(exc, api_exc.BadRequest):
        return UserError(f"BigQuery rejected the query ({msg})")
    return UserError(f"BigQuery failed ({type(exc).__name__}: {msg}): check --bigquery-endpoint and your network")


# ---- cost accounting ----------------------------------------------------------------------------------------------
class CostGuard:
    """Bytes billed per UTC day against the daily budget; persisted so that restarts keep counting."""

    def __init__(self, budget: int, price_per_tib: float, state_path: Optional[Path]):
        self.budget = int(budget)
        self.price = price_per_tib
        self.state_path = state_path
        self.day, self.spent = self._load()
        BUDGET_REMAINING.set(self.remaining())

    @staticmethod
    def today(now: Optional[float] = None) -> str:
        return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date().isoformat()

    def _load(self) -> tuple[str, int]:
        today = self.today()
        if self.state_path is not None and self.state_path.is_file():
            try:
                state = json.loads(self.state_path.read_text())
                if state.get("day") == today:
                    return today, int(state.get("bytes_billed", 0))
            except (ValueError, OSError):
                log.warning("bigquery spend file unreadable; starting today's count at 0", path=str(self.state_path))
        return today, 0

    def _roll(self) -> None:
        today = self.today()
        if today != self.day:
            self.day, self.spent = today, 0

    def remaining(self) -> int:
        self._roll()
        return max(0, self.budget - self.spent)

    def cost(self, n_bytes: int) -> float:
        return n_bytes / TIB * self.price

    def check(self, estimate: int) -> None:
        if estimate > self.remaining():
            raise BudgetExhausted(
                f"daily BigQuery budget reached: {human_bytes(self.spent)} of {human_bytes(self.budget)} billed today "
                f"(UTC) and the next query needs ~{human_bytes(estimate)}; raise --daily-budget, narrow with "
                f"--projects/--sample, or run again after 00:00 UTC"
            )

    def record(self, billed: int) -> None:
        self._roll()
        self.spent += int(billed)
        BUDGET_REMAINING.set(self.remaining())
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"day": self.day, "bytes_billed": self.spent}))
            tmp.replace(self.state_path)

    def interval(self, base: float, per_query: int, now: Optional[float] = None) -> float:
        """Seconds to the next poll so the budget lasts until midnight UTC (never shorter than `base`)."""
        if per_query <= 0:
            return base
        now = time.time() if now is None else now
        left_today = 86400 - now % 86400
        affordable = self.remaining() // per_query
        if affordable <= 0:
            return base  # the next dry run will stop us with a clear message
        return max(base, left_today / affordable)


@dataclass
class QueryResult:
    table: pa.Table
    estimate: int
    billed: int


def _retry():
    from google.cloud.bigquery import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(API_RETRY_S)


def _job_retry():
    from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

    return DEFAULT_JOB_RETRY.with_timeout(2 * API_RETRY_S)


class BigQuerySession:
    """One client, one cost guard: every query goes dry run → budget check → capped real run → accounting."""

    def __init__(self, settings: Settings, client: Optional[bigquery.Client] = None):
        self.settings = settings
        self.client = client if client is not None else make_client(settings)
        self.max_bytes = int(settings.max_bytes_per_query)
        state = Path(settings.data_dir) / "bigquery-spend.json"
        self.guard = CostGuard(int(settings.daily_budget), settings.price_per_tib, state)
        self.last_billed = 0

    def _config(self, params: list, dry_run: bool):
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(
            query_parameters=params,
            dry_run=dry_run,
            use_query_cache=not dry_run,
            maximum_bytes_billed=self.max_bytes,
            use_legacy_sql=False,
        )

    def estimate(self, sql: str, params: list, kind: str) -> int:
        try:
            job = self.client.query(
                sql, job_config=self._config(params, True), retry=_retry(), job_retry=None
            )  # a dry run starts no job: nothing to restart
        except Exception as exc:
            raise explain(exc, self.settings) from None
        est = int(job.total_bytes_processed or 0)
        ESTIMATED.labels(kind).set(est)
        log.info(
            "bigquery dry run",
            kind=kind,
            estimate_bytes=est,
            estimate=human_bytes(est),
            estimated_cost_usd=round(self.guard.cost(est), 4),
            budget_remaining_bytes=self.guard.remaining(),
        )
        return est

    def run(self, sql: str, params: list, kind: str) -> QueryResult:
        est = self.estimate(sql, params, kind)
        if est > self.max_bytes:
            raise UserError(
                f"the {kind} query would scan ~{human_bytes(est)}, above --max-bytes-per-query "
                f"({human_bytes(self.max_bytes)}): raise it, or read less with --projects or a shorter "
                f"--start/--end range"
            )
        self.guard.check(est)
        try:
            job = self.client.query(sql, job_config=self._config(params, False), retry=_retry(), job_retry=_job_retry())
            rows = job.result(page_size=50_000, retry=_retry(), job_retry=_job_retry())
            table = rows.to_arrow(create_bqstorage_client=False)
        except Exception as exc:
            raise explain(exc, self.settings) from None
        billed = job.total_bytes_billed
        billed = int(billed if billed is not None else (job.total_bytes_processed or est))
        self.last_billed = billed
        self.guard.record(billed)
        cost = self.guard.cost(billed)
        QUERIES.labels(kind).inc()
        BYTES_BILLED.labels(kind).inc(billed)
        COST_USD.labels(kind).inc(cost)
        ROWS_READ.inc(table.num_rows)
        log.info(
            "bigquery query",
            kind=kind,
            job_id=job.job_id,
            rows=table.num_rows,
            billed_bytes=billed,
            billed=human_bytes(billed),
            estimated_cost_usd=round(cost, 4),
            budget_remaining_bytes=self.guard.remaining(),
        )
        return QueryResult(table, est, billed)


# ---- filters ------------------------------------------------------------------------------------------------------
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


def _ts(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


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
    where, params = _filters(settings)
    cols = ", ".join(f"{expr} AS {alias}" for alias, expr in COLUMNS.items())
    sql = f"SELECT {cols} FROM {_table_ref(settings)} WHERE {' AND '.join(where)} ORDER BY timestamp"
    return sql, params


# ---- rows → events ------------------------------------------------------------------------------------------------
# One flat result row (COLUMNS order) as the nested BigQuery row (only the columns read); nulls inside records are
# omitted, a record with nothing set is null.
event_dict = nester(_READ)


def table_columns(table) -> tuple[list[int], list[str], list[list]]:
    """Event times (epoch µs), timestamps as BigQuery writes them (vectorised `format_bigquery_ts`), other columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = table.column("timestamp").cast(pa.timestamp("us", tz="UTC"))
    text = pc.strftime(ts, format="%Y-%m-%d %H:%M:%S UTC").to_pylist()
    micros = ts.cast(pa.int64()).to_pylist()
    others = [table.column(name).to_pylist() for name in COLUMNS if name != "timestamp"]
    return micros, text, others


@dataclass(order=True)
class Event:
    epoch: float
    seq: int
    value: bytes
    key: bytes


class IncrementalReader:
    """Watermark + overlap + de-duplication over [start, end): every row is returned once, late loads included.

    Whole days wholly behind `now - overlap` are read one query per day (a query bills each day it touches anyway);
    after that, each poll reads [watermark - overlap, now).
    """

    def __init__(
        self,
        session: BigQuerySession,
        start: float,
        end: Optional[float],
        overlap_s: float,
        exporter: Optional[ParquetExport] = None,
    ):
        self.session = session
        self.settings = session.settings
        self.sql, self.params = rows_query(self.settings)
        self.end = end
        self.overlap = overlap_s
        self.done_until = start  # everything before this is final and was returned
        self.watermark = start  # latest event time returned
        self.seen: dict[bytes, tuple[int, float]] = {}  # row digest -> (times returned, event time)
        self.exporter = exporter
        self._seq = 0
        self.finished = False
        self.catching_up = True

    def window(self, now: float) -> tuple[float, float]:
        lo = max(self.done_until, self.watermark - self.overlap)
        hi = now if self.end is None else min(self.end, now)
        next_midnight = (math.floor(lo / 86400) + 1) * 86400
        if next_midnight <= now - self.overlap:  # catching up: one query per whole day
            hi = min(hi, next_midnight)
        return lo, hi

    def poll(self, now: Optional[float] = None) -> list[Event]:
        """One query; the rows not returned before, in event-time order."""
        from google.cloud import bigquery

        now = time.time() if now is None else now
        lo, hi = self.window(now)
        if hi <= lo:
            self.catching_up = False
            self.finished = self.end is not None and lo >= self.end
            return []
        params = [
            bigquery.ScalarQueryParameter("lo", "TIMESTAMP", _ts(lo)),
            bigquery.ScalarQueryParameter("hi", "TIMESTAMP", _ts(hi)),
            *self.params,
        ]
        result = self.session.run(self.sql, params, "poll")
        events, keep = self._new_rows(result.table)
        if self.exporter is not None and events:
            import pyarrow as pa

            self.exporter.write(result.table.filter(pa.array(keep, type=pa.bool_())))
        final = hi == self.end or hi <= now - self.overlap
        if final:
            self.done_until = hi
            self.watermark = max(self.watermark, hi)
        else:  # loads are assumed at most `overlap` late: never re-read further back (a quiet watermark would
            self.done_until = max(self.done_until, hi - self.overlap)  # otherwise stretch polls over several days)
        self.catching_up = final and (self.end is None or hi < self.end) and hi < now
        self.finished = self.end is not None and hi >= self.end
        cutoff = max(self.done_until, self.watermark - self.overlap)
        self.seen = {d: v for d, v in self.seen.items() if v[1] >= cutoff}
        ROWS_NEW.inc(len(events))
        log.info(
            "bigquery poll",
            lo=format_bigquery_ts(lo),
            hi=format_bigquery_ts(hi),
            read=result.table.num_rows,
            new=len(events),
            watermark=format_bigquery_ts(self.watermark),
        )
        return events

    def _new_rows(self, table) -> tuple[list[Event], list[bool]]:
        """Multiset difference against what was already returned: a row read again in the overlap is dropped, a
        second identical download is kept."""
        micros, text, others = table_columns(table)
        counts: Counter = Counter()
        latest: dict[bytes, float] = {}
        events: list[Event] = []
        keep: list[bool] = []
        seen, dumps, blake2b = self.seen, orjson.dumps, hashlib.blake2b
        for us, ts, values in zip(micros, text, zip(*others)):
            if us is None:
                keep.append(False)
                continue
            value = dumps(event_dict(ts, *values))
            digest = blake2b(value, digest_size=16).digest()
            n = counts[digest] = counts[digest] + 1
            epoch = us / 1e6
            latest[digest] = epoch
            prev = seen.get(digest)
            if prev is not None and n <= prev[0]:
                keep.append(False)
                continue
            keep.append(True)
            self._seq += 1
            project = values[1]
            events.append(Event(epoch, self._seq, value, project.encode() if project else b""))
        if events:
            self.watermark = max(self.watermark, max(e.epoch for e in events))
        for digest, n in counts.items():
            prev = seen.get(digest)
            seen[digest] = (max(n, prev[0] if prev else 0), latest[digest])
        events.sort()
        return events, keep


class ParquetExport:
    """Appends what was read to one Parquet file, flat columns that `--source file:PATH` replays."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.writer: Optional[pq.ParquetWriter] = None
        self.rows = 0

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.writer = pq.ParquetWriter(str(self.path), table.schema)
            except OSError as exc:
                raise UserError(f"cannot write --export {self.path}: {exc}") from None
        self.writer.write_table(table.cast(self.writer.schema))
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def merge_pending(pending: list[Event], new: Iterable[Event]) -> None:
    """Keep the not-yet-sent events as a heap in event-time order (late loads slot in where they belong)."""
    for e in new:
        heapq.heappush(pending, e)


# ---- per-day aggregates for backfill ------------------------------------------------------------------------------
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


_sessions: dict[tuple, BigQuerySession] = {}


def session_for(settings: Settings) -> BigQuerySession:
    """One session per configuration in a process, so a multi-day backfill shares one budget count."""
    key = (
        settings.billing_project,
        str(settings.credentials),
        settings.bigquery_endpoint,
        str(settings.data_dir),
        int(settings.daily_budget),
        int(settings.max_bytes_per_query),
    )
    s = _sessions.get(key)
    if s is None:
        s = _sessions[key] = BigQuerySession(settings)
    return s


def daily_aggregates(settings: Settings, day: dt.date) -> Iterator[tuple[str, str, Optional[str], int]]:
    """(project, dimension, category, downloads) for one UTC day: what the dataflow's daily rollups hold."""
    from google.cloud import bigquery

    session = session_for(settings)
    sql, params = aggregates_query(settings)
    lo = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    params = [
        bigquery.ScalarQueryParameter("lo", "TIMESTAMP", lo),
        bigquery.ScalarQueryParameter("hi", "TIMESTAMP", lo + dt.timedelta(days=1)),
        *params,
    ]
    table = session.run(sql, params, "aggregate").table
    cols = [table.column(c).to_pylist() for c in ("project", "dimension", "category", "downloads")]
    for project, dimension, category, n in zip(*cols):
        yield project, dimension, category, int(n)
