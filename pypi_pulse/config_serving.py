"""The settings of serving: the dashboard and JSON API server, the Prometheus endpoints, sign-in and logs.

One group of `pypi_pulse.config.Settings`, which is where settings are read, validated and documented as one set.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import ByteSize, Field
from pydantic_settings import BaseSettings

#: the history readers' in-memory series budget (`history_series_mib`): 15,000 projects x 180 days take 41 MiB
DEFAULT_HISTORY_SERIES_MIB = 256


class ServingSettings(BaseSettings):
    # Serving
    host: str = Field("127.0.0.1", description="Dashboard/API bind address.")
    public_api: bool = Field(
        False, description="Let anyone read GET /api/... without signing in (`serve --public-api`, `up --public-api`)."
    )
    port: int = Field(8050, ge=1, le=65535, description="Dashboard/API port.")
    metrics_host: str = Field("127.0.0.1", description="Prometheus exporter bind address.")
    metrics_port: int = Field(9108, ge=1, le=65535, description="Prometheus exporter port.")
    metrics_span_seconds: int = Field(
        10, ge=1, le=3600, description="Exporter per-second rates: mean over this many newest seconds."
    )
    producer_metrics_port: Optional[int] = Field(
        None, ge=1, le=65535, description="`produce --metrics-port`: serve its /metrics here (up: metrics_port + 1)."
    )
    dataflow_metrics_port: Optional[int] = Field(
        None, ge=1, le=65535, description="`dataflow --metrics-port`: serve its /metrics here (up: metrics_port + 2)."
    )
    signin_checks: int = Field(
        1,
        ge=1,
        le=8,
        description="Dashboard password checks (argon2, about 64 MiB each) running at once in the "
        "server process; further sign-ins wait for a slot, so memory stays bounded whatever the concurrency.",
    )
    signin_wait_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        description="How long a sign-in waits for a free password-check slot before it is "
        "refused with 503 and Retry-After.",
    )
    max_request_bytes: ByteSize = Field(
        ByteSize(256 * 2**10),
        description="Largest request body the dashboard accepts (Dash callbacks, sign-in); larger: 413.",
    )
    max_response_bytes: ByteSize = Field(
        ByteSize(8 * 2**20),
        description="Largest Dash callback response; a callback whose output would be larger answers 400 "
        "asking for a narrower request instead.",
    )
    max_chart_series: int = Field(
        10,
        ge=1,
        le=100,
        description="Packages on the trends chart and countries on the live rate chart, at most; "
        "extra ones in a request are ignored.",
    )
    max_name_chars: int = Field(
        200,
        ge=16,
        le=10_000,
        description="Longest package name (or package search text) the dashboard and the API "
        "accept: the API answers 400 beyond it, a search finds nothing.",
    )
    secure_cookies: bool = Field(
        False,
        description="Send the dashboard's session cookie over HTTPS only (`serve --secure-cookies`, behind a TLS proxy).",
    )
    serve_workers: int = Field(
        2,
        ge=1,
        le=64,
        json_schema_extra={"flag": "--workers"},
        description="`serve --workers`: server processes (gunicorn; waitress, the fallback where "
        "gunicorn is not installed, runs one). Sessions, the sign-in throttle and the session secret live in the data "
        "directory, so any worker answers any request; about 2 x cores, each holds its own sink connections and caches.",
    )
    serve_threads: int = Field(
        4,
        ge=1,
        le=64,
        json_schema_extra={"flag": "--threads"},
        description="`serve --threads`: request threads in each server process; requests mostly wait "
        "on the sink, so a few threads per process keep the cores busy. Bounds the sink connections a process opens.",
    )
    serve_server: Literal["auto", "gunicorn", "waitress"] = Field(
        "auto",
        description="`serve`'s WSGI server: gunicorn (several processes; Linux and macOS), waitress (one "
        "process, pure Python, also on Windows), or auto: gunicorn where it is installed, else waitress.",
    )
    serve_stop_seconds: float = Field(
        3.0,
        gt=0,
        le=60,
        description="On Ctrl-C or SIGTERM, `serve` lets requests in progress finish for this long, "
        "then stops its workers.",
    )
    signin_claim_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="A sign-in's claim on its address and user name (one password check in flight "
        "for each, across all server processes) expires after this long, so a process that died mid-check does not "
        "block them; longer than signin_wait_seconds plus one argon2 check.",
    )
    sink_read_connections: int = Field(
        4,
        ge=1,
        le=64,
        description="PostgreSQL: most read connections each server process or exporter keeps in its "
        "pool (psycopg_pool); requests beyond that wait for a free one.",
    )
    sink_read_wait_seconds: float = Field(
        10.0, gt=0, le=120, description="PostgreSQL: how long a read waits for a pooled connection before it fails."
    )
    history_series_mib: int = Field(
        DEFAULT_HISTORY_SERIES_MIB,
        ge=0,
        description="Memory a server process's history reader may spend on the in-memory "
        "`overall`/`with_mirrors` downloads per project and day, in MiB; the newest days are held, questions about "
        "older ones read the history's files (same answers, slower). 0: none held.",
    )
    readyz_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="`/readyz` of `serve` and `metrics` answers 503 when the sink has not answered "
        "a trivial query within this long.",
    )
    healthz_stale_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="The producer's and the dataflow's /healthz answer 503 once their main loop "
        "has made no progress for this long (a loop waiting on a missing broker still turns, and stays alive).",
    )
    live_delayed_after_seconds: float = Field(
        5.0,
        gt=0,
        description="The JSON API's live summary and the Live tab say the data is delayed once the newest stored window ended longer ago than this, or the sink cannot be read.",
    )
    live_gap_seconds: int = Field(
        10,
        ge=1,
        le=3600,
        description="Live rate chart: a run of more than this many seconds without a stored window "
        "is drawn as a gap (producer or pipeline stopped), a shorter one as 0 downloads/s (the dataflow writes a window "
        "for every second with a download); seconds before the first window are always a gap.",
    )
    live_top_max_window_seconds: int = Field(
        3600,
        ge=60,
        le=48 * 3600,
        description="`GET /api/live/top?window=N`: the longest span of newest seconds asked for.",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field("warning", description="Log verbosity.")
    log_format: Literal["console", "json"] = Field("console", description="Log rendering.")
