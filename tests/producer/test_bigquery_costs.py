"""Cost guards and errors of the BigQuery source, with the real google-cloud-bigquery client talking to a local
server that speaks BigQuery's REST API (dry-run estimates, billed bytes, error responses, OAuth tokens): what the
emulator cannot show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from bq_fakes import FakeBigQuery, service_account_file
from prometheus_client import REGISTRY

from pypi_pulse.config import load_settings
from pypi_pulse.errors import UserError
from pypi_pulse.producer.bigquery import IncrementalReader
from pypi_pulse.producer.bigquery_client import make_client
from pypi_pulse.producer.bigquery_costs import BigQuerySession, BudgetExhausted, CostGuard
from pypi_pulse.producer.bigquery_source import run_bigquery_source
from pypi_pulse.producer.publisher import Publisher

GB = 10**9
D0 = 1795046400  # 2026-11-19T00:00:00Z


@pytest.fixture
def fake():
    f = FakeBigQuery(bytes_per_query=GB).start()
    yield f
    f.stop()


def _settings(fake, tmp_path, **kw):
    kw.setdefault("billing_project", "pulse-test")
    return load_settings(
        None,
        source="bigquery",
        bigquery_endpoint=fake.endpoint,
        bigquery_table="p.pypi.downloads",
        data_dir=tmp_path / "data",
        **kw,
    )


def _metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pypi_pulse.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_every_query_is_dry_run_first_capped_logged_and_counted(fake, tmp_path, broker, topic, capsys):
    s = _settings(fake, tmp_path, start="2026-11-19", end="2026-11-22", max_bytes_per_query="7GB", daily_budget="100GB")
    billed0, queries0 = (
        _metric("pypi_pulse_bigquery_bytes_billed_total", kind="poll"),
        _metric("pypi_pulse_bigquery_queries_total", kind="poll"),
    )
    pub = Publisher(broker.bootstrap, topic, topic + "-dlq")
    run_bigquery_source(pub, s, threading.Event())

    assert "dry run: the first query will scan ~1.0 GB (≈ $0.01); cap 7.0 GB/query" in capsys.readouterr().err
    runs = fake.real_runs()
    assert len(runs) == 3  # one query per day of the range
    assert all(r["configuration"]["query"]["maximumBytesBilled"] == str(7 * GB) for r in fake.requests)
    assert len(fake.dry_runs()) == len(runs) + 1  # the announcement, then one before each real query
    for r in runs:
        sql = r["configuration"]["query"]["query"]
        assert "timestamp >= @lo AND timestamp < @hi" in sql and "SELECT *" not in sql  # partition filter, few columns
    assert _metric("pypi_pulse_bigquery_bytes_billed_total", kind="poll") - billed0 == 3 * GB
    assert _metric("pypi_pulse_bigquery_queries_total", kind="poll") - queries0 == 3
    assert _metric("pypi_pulse_bigquery_budget_remaining_bytes") == 97 * GB
    assert json.loads((tmp_path / "data" / "bigquery-spend.json").read_text())["bytes_billed"] == 3 * GB


def test_budget_stops_polling_and_survives_a_restart(fake, tmp_path):
    s = _settings(fake, tmp_path, daily_budget="2.5GB")
    reader = IncrementalReader(BigQuerySession(s), start=D0, end=D0 + 5 * 86400, overlap_s=600)
    reader.poll()
    reader.poll()
    with pytest.raises(
        BudgetExhausted, match=r"daily BigQuery budget reached: 2.0 GB of 2.5 GB .* raise --daily-budget"
    ):
        reader.poll()
    assert len(fake.real_runs()) == 2  # the third query never ran

    # a restarted producer keeps today's count
    again = IncrementalReader(BigQuerySession(s), start=D0, end=D0 + 5 * 86400, overlap_s=600)
    with pytest.raises(BudgetExhausted):
        again.poll()
    assert len(fake.real_runs()) == 2


def test_budget_stop_from_the_cli_is_one_line_and_exit_2(fake, tmp_path, broker, topic):
    r = _cli(
        "produce",
        "--source",
        "bigquery",
        "--bigquery-endpoint",
        fake.endpoint,
        "--billing-project",
        "p",
        "--start",
        "2026-11-01",
        "--end",
        "2026-11-06",
        "--daily-budget",
        "2.5GB",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topic,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: daily BigQuery budget reached") and "--daily-budget" in last
    assert len(fake.real_runs()) == 2


def test_poll_interval_stretches_so_the_budget_lasts_the_day():
    guard = CostGuard(budget=100 * GB, price_per_tib=6.25, state_path=None)
    guard.spent = 40 * GB
    noon = D0 + 43200
    assert guard.interval(60, per_query=GB, now=noon) == pytest.approx(43200 / 60)  # 60 queries left for 12 h
    assert guard.interval(60, per_query=10**6, now=noon) == 60  # cheap queries: the configured interval
    assert guard.cost(2**40) == 6.25


def test_queries_above_the_cap_fail_before_and_at_bigquery(fake, tmp_path):
    s = _settings(fake, tmp_path, max_bytes_per_query="500MB")
    with pytest.raises(UserError, match=r"would scan ~1.0 GB, above --max-bytes-per-query \(500.0 MB\)"):
        IncrementalReader(BigQuerySession(s), start=D0, end=D0 + 3600, overlap_s=600).poll()
    assert fake.real_runs() == []  # refused on the dry run's estimate

    # BigQuery's own refusal (the estimate was under the cap, the bill would not be)
    fake.job_error = (
        "bytesBilledLimitExceeded",
        "Query exceeded limit for bytes billed: 2000000000. 3000000000 or higher required.",
    )
    s2 = _settings(fake, tmp_path, max_bytes_per_query="2GB")
    with pytest.raises(UserError, match=r"BigQuery refused a query above --max-bytes-per-query \(2.0 GB\): raise it"):
        IncrementalReader(BigQuerySession(s2), start=D0, end=D0 + 3600, overlap_s=600).poll()


def test_denied_query_says_which_role_is_missing(fake, tmp_path):
    fake.insert_error = (
        403,
        "accessDenied",
        "Access Denied: Project pulse-test: User does not have bigquery.jobs.create permission in project pulse-test.",
    )
    with pytest.raises(
        UserError, match=r"BigQuery denied the query \(Access Denied: .*\): give the account the BigQuery Job User role"
    ):
        BigQuerySession(_settings(fake, tmp_path)).estimate("SELECT 1", [], "poll")


def test_credentials_errors_are_one_clear_line(fake, tmp_path):
    with pytest.raises(
        UserError, match=r"credentials file .*nope.json does not exist: pass a service-account JSON key"
    ):
        make_client(_settings(fake, tmp_path, credentials=tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "service_account", "client_email": "x@y"}')
    with pytest.raises(UserError, match=r"is not a usable Google key .*download a new service-account JSON key"):
        make_client(_settings(fake, tmp_path, credentials=bad))
    with pytest.raises(UserError, match=r"no billing project: pass --billing-project"):
        make_client(_settings(fake, tmp_path, billing_project=None))


def test_service_account_key_is_used_and_its_rejection_explained(fake, tmp_path, broker, topic):
    key = service_account_file(tmp_path / "key.json", fake.token_uri, project="key-project")
    s = _settings(fake, tmp_path, credentials=key, billing_project=None)
    BigQuerySession(s).estimate("SELECT 1", [], "poll")  # a token from the key, billed to the key's project
    assert fake.dry_runs()[-1]["jobReference"]["projectId"] == "key-project"

    fake.token_error = "Invalid JWT Signature."
    r = _cli(
        "produce",
        "--source",
        "bigquery",
        "--bigquery-endpoint",
        fake.endpoint,
        "--credentials",
        str(key),
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topic,
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: Google rejected the credentials (")
    assert "Invalid JWT Signature" in r.stderr and "gcloud auth application-default login" in r.stderr


def test_missing_application_default_credentials(tmp_path, broker, topic):
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="True", GCE_METADATA_HOST="127.0.0.1:9")
    r = _cli(
        "produce",
        "--source",
        "bigquery",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topic,
        "--data-dir",
        str(tmp_path / "d"),
        env=env,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: no Google credentials found: run `gcloud auth application-default login`, set "
        "GOOGLE_APPLICATION_CREDENTIALS, or pass --credentials KEY.json"
    ]
