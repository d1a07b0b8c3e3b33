"""Talking to BigQuery: the client, from the credentials a user has, and Google's errors as one line each.

Every failure a user can fix (no or rejected credentials, no billing project, a denied query, the bytes-billed cap)
becomes a `UserError` that says what to do, so the command exits with that line instead of a Google traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pypi_pulse.errors import UserError

if TYPE_CHECKING:
    from google.cloud import bigquery

    from pypi_pulse.config import Settings

SCOPES = ("https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} TB"


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
