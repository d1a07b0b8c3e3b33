"""Running BigQuery queries without surprises on the bill.

`bigquery-public-data.pypi.file_downloads` is partitioned by day on `timestamp` and clustered by `project`: every
query bills the whole day partition for each column it reads, however narrow its time filter. So every query is
dry-run first (the estimate is checked against the daily budget and logged), and runs with `maximum_bytes_billed` so
BigQuery itself refuses to bill more than the user allowed. What was billed is kept per UTC day in DATA_DIR so a
restart does not reset the budget, and is exported as Prometheus metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import structlog
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from pypi_pulse.errors import UserError
from pypi_pulse.producer.bigquery_client import explain, human_bytes, make_client

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud import bigquery

    from pypi_pulse.config import Settings

log = structlog.get_logger(__name__)

TIB = 2**40
API_RETRY_S = 30.0  # transient API errors are retried this long (the client's default, 10 minutes, looks like a hang)

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


class BudgetExhausted(UserError):
    """Today's budget cannot pay for the next query."""


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
