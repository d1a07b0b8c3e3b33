"""Local BigQuery for tests (no network): the bqemulator server in its own virtualenv, and a small HTTP server that
speaks the REST shapes the real `google-cloud-bigquery` client uses where the emulator falls short (dry-run byte
estimates, `maximumBytesBilled`, error responses, an OAuth token endpoint that rejects keys)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest

from pypi_pulse.broker import free_port

EMULATOR_PROJECT = "demo"
TABLE = f"{EMULATOR_PROJECT}.pypi.file_downloads"
DEFAULT_VENV_PYTHON = "/opt/pypi-pulse-bqemulator/bin/python"


def emulator_python() -> str:
    py = os.environ.get("PYPI_PULSE_BQEMULATOR_PYTHON") or DEFAULT_VENV_PYTHON
    if not Path(py).is_file():
        pytest.fail("the BigQuery emulator is not installed: run `. .ci/bqemulator.sh` first (CI does)")
    return py


# DuckDB would download its spatial extension at start; install it from the wheel the venv already has.
_SPATIAL = """
import pathlib, duckdb, duckdb_extension_spatial
root = pathlib.Path(duckdb_extension_spatial.__file__).parent
ext = next(root.glob(f"extensions/v{duckdb.__version__}/spatial.duckdb_extension"))
con = duckdb.connect()
try:
    con.execute("LOAD spatial")
except Exception:
    con.execute(f"INSTALL '{ext}'")
"""


class Emulator:
    """`bqemulator start` as a subprocess on free ports, stopped by its pid."""

    def __init__(self, log_path: Path):
        self.python = emulator_python()
        self.port = free_port()
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Emulator:
        import requests

        subprocess.run([self.python, "-c", _SPATIAL], check=True, timeout=120)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "bqemulator",
                "start",
                "--rest-port",
                str(self.port),
                "--grpc-port",
                str(free_port()),
                "--project",
                EMULATOR_PROJECT,
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"bqemulator exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            try:
                requests.get(f"{self.endpoint}/bigquery/v2/projects/{EMULATOR_PROJECT}/datasets", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"bqemulator did not answer within {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def client(self):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=EMULATOR_PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def create_downloads_table(self, table: str = TABLE) -> str:
        """The public table's schema (the parts we read, nested), partitioned by day and clustered by project."""
        from google.cloud import bigquery

        S = bigquery.SchemaField
        schema = [
            S("timestamp", "TIMESTAMP"),
            S("country_code", "STRING"),
            S("url", "STRING"),
            S("project", "STRING"),
            S(
                "file",
                "RECORD",
                fields=[S("filename", "STRING"), S("project", "STRING"), S("version", "STRING"), S("type", "STRING")],
            ),
            S(
                "details",
                "RECORD",
                fields=[
                    S("installer", "RECORD", fields=[S("name", "STRING"), S("version", "STRING")]),
                    S("python", "STRING"),
                    S("system", "RECORD", fields=[S("name", "STRING"), S("release", "STRING")]),
                    S("cpu", "STRING"),
                    S("ci", "BOOLEAN"),
                ],
            ),
        ]
        c = self.client()
        c.create_dataset(table.rsplit(".", 1)[0], exists_ok=True)
        t = bigquery.Table(table, schema=schema)
        t.time_partitioning = bigquery.TimePartitioning(field="timestamp")
        t.clustering_fields = ["project"]
        c.delete_table(table, not_found_ok=True)
        c.create_table(t)
        return table

    def insert(self, rows: list[dict], table: str = TABLE) -> None:
        errors = self.client().insert_rows_json(table, rows)
        assert not errors, errors


# ---- the small REST server ----------------------------------------------------------------------------------------
ROW_FIELDS = [
    ("timestamp", "TIMESTAMP"),
    ("country_code", "STRING"),
    ("file_project", "STRING"),
    ("file_version", "STRING"),
    ("file_type", "STRING"),
    ("details_installer_name", "STRING"),
    ("details_python", "STRING"),
    ("details_system_name", "STRING"),
    ("details_cpu", "STRING"),
    ("details_ci", "BOOLEAN"),
]


class FakeBigQuery:
    """BigQuery's REST API as the client sees it: jobs.insert (dry run or real), jobs.get, getQueryResults,
    tabledata.list, and an OAuth token endpoint. Every jobs.insert body is kept in `requests` for assertions."""

    def __init__(self, bytes_per_query: int = 10**9):
        self.bytes_per_query = bytes_per_query
        self.rows: list[dict] = []  # flat rows (ROW_FIELDS, timestamp as epoch microseconds) returned by real runs
        self.insert_error: Optional[tuple[int, str, str]] = None  # (status, reason, message) on jobs.insert
        self.job_error: Optional[tuple[str, str]] = None  # (reason, message) in the finished job's errorResult
        self.token_error: Optional[str] = None  # OAuth error for the token endpoint
        self.requests: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    def start(self) -> FakeBigQuery:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def real_runs(self) -> list[dict]:
        return [r for r in self.requests if not r["configuration"].get("dryRun")]

    def dry_runs(self) -> list[dict]:
        return [r for r in self.requests if r["configuration"].get("dryRun")]

    # -- responses
    def _job(self, body: dict, project: str) -> dict:
        ref = dict(body.get("jobReference") or {})
        ref.setdefault("projectId", project)
        ref.setdefault("jobId", uuid.uuid4().hex)
        ref.setdefault("location", "US")
        n = str(self.bytes_per_query)
        conf = body["configuration"]
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:{ref['location']}.{ref['jobId']}",
            "jobReference": ref,
            "configuration": conf,
            "status": {"state": "DONE"},
            "statistics": {
                "creationTime": "1",
                "startTime": "1",
                "endTime": "2",
                "totalBytesProcessed": n,
                "query": {"totalBytesProcessed": n, "statementType": "SELECT"},
            },
        }
        if conf.get("dryRun"):
            return job
        job["statistics"]["query"].update(totalBytesBilled=n, cacheHit=False)
        conf["query"]["destinationTable"] = {"projectId": project, "datasetId": "_anon", "tableId": "t" + ref["jobId"]}
        if self.job_error:
            reason, message = self.job_error
            job["status"] = {
                "state": "DONE",
                "errorResult": {"reason": reason, "message": message},
                "errors": [{"reason": reason, "message": message}],
            }
        return job

    def _schema(self) -> dict:
        return {"fields": [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in ROW_FIELDS]}

    def _rows(self) -> list[dict]:
        def cell(v):
            if v is None:
                return {"v": None}
            if isinstance(v, bool):
                return {"v": "true" if v else "false"}
            return {"v": str(v)}

        return [{"f": [cell(r.get(n)) for n, _ in ROW_FIELDS]} for r in self.rows]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, reason: str, message: str) -> None:
                self._send(
                    status,
                    {
                        "error": {
                            "code": status,
                            "message": message,
                            "status": reason,
                            "errors": [{"reason": reason, "message": message, "domain": "global"}],
                        }
                    },
                )

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):
                path = self.path.split("?", 1)[0]
                raw = self._body()
                if path == "/token":
                    if fake.token_error:
                        return self._send(400, {"error": "invalid_grant", "error_description": fake.token_error})
                    return self._send(200, {"access_token": "fake-token", "expires_in": 3600, "token_type": "Bearer"})
                m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs", path)
                if not m:
                    return self._error(404, "notFound", f"no route POST {path}")
                body = json.loads(raw)
                fake.requests.append(body)
                if fake.insert_error:
                    return self._error(*fake.insert_error)
                job = fake._job(body, m.group(1))
                if not body["configuration"].get("dryRun"):
                    fake.jobs[job["jobReference"]["jobId"]] = job
                return self._send(200, job)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/jobs/([^/]+)", path)
                if m:
                    job = fake.jobs.get(m.group(2))
                    return self._send(200, job) if job else self._error(404, "notFound", "no such job")
                m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/queries/([^/]+)", path)
                if m:
                    job = fake.jobs.get(m.group(2))
                    if job is None:
                        return self._error(404, "notFound", "no such job")
                    if fake.job_error:
                        return self._error(400, *fake.job_error)
                    return self._send(
                        200,
                        {
                            "kind": "bigquery#getQueryResultsResponse",
                            "jobComplete": True,
                            "jobReference": job["jobReference"],
                            "schema": fake._schema(),
                            "totalRows": str(len(fake.rows)),
                            "rows": fake._rows(),
                            "totalBytesProcessed": str(fake.bytes_per_query),
                            "cacheHit": False,
                        },
                    )
                m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/data", path)
                if m:
                    return self._send(
                        200, {"kind": "bigquery#tableDataList", "totalRows": str(len(fake.rows)), "rows": fake._rows()}
                    )
                m = re.fullmatch(r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", path)
                if m:
                    return self._send(
                        200,
                        {
                            "kind": "bigquery#table",
                            "schema": fake._schema(),
                            "numRows": str(len(fake.rows)),
                            "tableReference": {"projectId": m.group(1), "datasetId": m.group(2), "tableId": m.group(3)},
                        },
                    )
                return self._error(404, "notFound", f"no route GET {path}")

        return Handler


def service_account_file(path: Path, token_uri: str, project: str = "key-project") -> Path:
    """A well-formed service-account key (fresh RSA key) whose token endpoint is `token_uri`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": f"pulse@{project}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return path
