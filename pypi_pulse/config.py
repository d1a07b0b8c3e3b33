"""Every setting of pypi-pulse, defined once: flags, `PYPI_PULSE_*` environment variables and a TOML file.

Precedence (highest first): command-line flags, environment, `--config FILE` (or `PYPI_PULSE_CONFIG`), defaults.
Values are validated at start so that a bad one fails fast with a message that says how to fix it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import ByteSize, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from pypi_pulse.bounds import DEFAULT_FUTURE_TOLERANCE_S, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_PROJECT_NAME
from pypi_pulse.errors import UserError
from pypi_pulse.events import PACK_MAX_BYTES

DEFAULT_DATA_DIR = Path("pypi-pulse-data")
OWN_TOPIC_PACK_EVENTS = 1000  # on a topic only pypi-pulse reads, Kafka's per-message cost is worth sharing
# A live producer sends a message to every partition each 50 ms tick; waiting lets the client put several ticks in one
# record batch per partition. The embedded broker's cost per batch appended grows with the batches it holds: at
# 20,000 events/s and 20 ms its CPU went 0.38 -> 0.79 of a core in three minutes; at 100 ms it grows about 0.03 of a
# core a minute, at 200 ms about 0.007, for 0.1 s more at the median (benchmarks/latency.py).
DEFAULT_LINGER_MS = 100
EMBEDDED_LINGER_MS = 200
DEFAULT_COMPRESSION = "zstd"  # of record batches (setting `compression`)
DEFAULT_BROKER_OUTAGE_LOG_S = 30.0
DEFAULT_PRODUCER_STALL_S = 5.0
DEFAULT_PRODUCER_STOP_S = 1.5
DEFAULT_OFFSET_RESET_CONFIRM_S = 1.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PYPI_PULSE_", extra="forbid", validate_default=True)

    # Kafka
    bootstrap_servers: Optional[str] = Field(
        None, description="Kafka bootstrap servers (host:port,...). Unset: start the embedded broker."
    )
    topic: str = Field("pypi-downloads", description="Topic of download events.")
    dlq_topic: str = Field("pypi-downloads-dlq", description="Dead-letter topic: malformed events with the reason.")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions when pypi-pulse creates the topic.")
    broker_port: int = Field(9092, ge=0, le=65535, description="Port of the embedded broker (0: any free port).")
    broker_outage_log_seconds: float = Field(
        DEFAULT_BROKER_OUTAGE_LOG_S,
        gt=0,
        description="While the broker is unavailable, the producer and the dataflow "
        "each log one `kafka.broker_unavailable` line this often (librdkafka's own reconnection lines are kept at debug).",
    )
    producer_stall_seconds: float = Field(
        DEFAULT_PRODUCER_STALL_S,
        gt=0,
        le=600,
        description="A producer whose broker answers but acknowledges nothing "
        "for this long (a restarted memory-only broker refuses its idempotent producer id forever) is replaced, and "
        "what it had not got acknowledged is sent again; longer: slower recovery, shorter: a slow broker may be "
        "taken for a stuck one.",
    )
    producer_stop_seconds: float = Field(
        DEFAULT_PRODUCER_STOP_S,
        gt=0,
        le=60,
        description="On Ctrl-C the producer waits this long for Kafka to "
        "acknowledge what it holds, then stops and reports how many events were not delivered.",
    )
    offset_reset_confirm_seconds: float = Field(
        DEFAULT_OFFSET_RESET_CONFIRM_S,
        gt=0,
        le=60,
        description="The dataflow takes a partition whose log ends before its resume offset (a "
        "restarted memory-only broker) for recreated once the broker has said so for this long; it then resumes at "
        "the log's start and logs and counts the reset.",
    )

    # Storage
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where embedded state lives (SQLite, recovery).")
    sink: Optional[str] = Field(
        None, description="sqlite:///PATH.db or postgresql://user:pass@host/db (default: DATA_DIR/pypi-pulse.db)."
    )
    window_retention_hours: float = Field(48.0, gt=0, description="Keep per-second windows this long.")
    rollup_retention_days: int = Field(400, gt=0, description="Keep daily rollups this long.")
    rollup_detail_min_downloads: int = Field(
        1000,
        ge=0,
        description="On complete days, projects below this many downloads keep one 'other' row per fine "
        "dimension (country, installer, cpu, file type, version, ci); 0 keeps every row.",
    )
    backfill_days: int = Field(
        180,
        ge=0,
        le=400,
        description="`up` with the synthetic source on an empty sink: days of synthetic history to backfill (0: none).",
    )
    backfill_detail_min_downloads: int = Field(
        100_000,
        ge=0,
        description="`up`'s synthetic history: projects below this many downloads a day keep one 'other' "
        "row per fine dimension (the sink's folding rule), so that 180 days stay a demo-sized sink; 0 keeps every row.",
    )
    trending_min_downloads: int = Field(
        100,
        ge=1,
        description="Trending: a project needs at least this many downloads per hour of the window to be "
        "listed (a jump from 2 to 20 downloads is noise, not a surge).",
    )
    trending_baseline_weeks: int = Field(
        4,
        ge=1,
        le=52,
        description="Trending: the usual level of an hour is the mean of the same hour of the week "
        "over this many past weeks.",
    )
    trending_max_window_hours: int = Field(
        6,
        ge=1,
        le=48,
        description="Trending: the longest window asked for (`?window=Nh`); the dataflow keeps each "
        "block's per-project counts this long plus an hour (at most window_retention_hours): at 1,000 synthetic "
        "events/s a 10-minute block holds about 27,000 projects, so each hour kept is some 160,000 rows.",
    )
    trending_metric_top: int = Field(
        10,
        ge=1,
        le=100,
        description="Prometheus exporter: how many trending projects get a pypi_pulse_trending_ratio series.",
    )

    # Producer
    source: str = Field("synthetic", description="synthetic | file:PATH | bigquery")
    rate: float = Field(1000.0, gt=0, description="Synthetic events per second.")
    seed: Optional[int] = Field(None, description="Seed for a reproducible synthetic stream.")
    speed: str = Field("realtime", description="File replay pace: realtime | Nx (e.g. 10x) | max.")
    restamp: bool = Field(False, description="Shift replayed timestamps so the first event is now.")
    order: Literal["time", "file"] = Field(
        "time",
        description="File replay order. time: sorted by event second first (a BigQuery extract comes in no "
        "time order, and in file order events beyond the lateness horizon would be dropped); file: as the file is.",
    )
    sort_memory: ByteSize = Field(
        "1GiB",
        description="File replay in time order: bytes of the export sorted in memory at once; a larger "
        "export is sorted in runs of this size spilled under DATA_DIR/replay-sort and merged.",
    )
    linger_ms: Optional[int] = Field(
        None,
        ge=0,
        le=5000,
        description="How long the producer waits to fill a record batch (Kafka's linger.ms). "
        f"Larger: fewer, larger batches, which the embedded broker needs on long runs; each ms adds to end-to-end "
        f"latency. Unset: {EMBEDDED_LINGER_MS} for `up` and `run` on the embedded broker, {DEFAULT_LINGER_MS} otherwise.",
    )
    compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = Field(
        DEFAULT_COMPRESSION,
        description="Compression of the producer's record batches. zstd: download events are "
        "repetitive JSON, so the broker handles and holds (the embedded one in memory) several times fewer bytes, for "
        "a little producer CPU; every Kafka client reads it.",
    )
    pack_events: Optional[int] = Field(
        None,
        ge=1,
        le=10_000,
        description="Events per Kafka message (NDJSON lines, marked by a content-type header). "
        "1: one event per message, what other consumers of a shared topic expect. Unset: 1 for `produce` and for `up` "
        f"on your Kafka; {OWN_TOPIC_PACK_EVENTS} for `run` and for `up` on the embedded broker, whose topics are pypi-pulse's own.",
    )

    max_event_bytes: ByteSize = Field(
        DEFAULT_MAX_EVENT_BYTES,
        ge=1024,
        le=PACK_MAX_BYTES,
        description="A line or rebuilt row larger than this is "
        "dead-lettered by the producer (event_too_large; the dead letter keeps its first max_event_bytes bytes): a "
        "real event is about 700 bytes, and Kafka refuses a message over message.max.bytes (1 MB), which would "
        "otherwise abort a replay.",
    )

    # BigQuery source (producer/bigquery.py): cost guards first, then filters
    bigquery_table: str = Field("bigquery-public-data.pypi.file_downloads", description="Table of PyPI downloads.")
    billing_project: Optional[str] = Field(
        None, description="Google Cloud project billed for queries (default: the credentials' project)."
    )
    credentials: Optional[Path] = Field(
        None, description="Service-account key file (default: Application Default Credentials)."
    )
    bigquery_endpoint: Optional[str] = Field(None, description="BigQuery API URL (emulators, tests); unset: Google's.")
    max_bytes_per_query: ByteSize = Field(
        "500GB", description="maximum_bytes_billed of every query: it fails instead of billing more."
    )
    daily_budget: ByteSize = Field(
        "1TB", description="Bytes billed per UTC day before polling stops (e.g. 500GB, 2TiB)."
    )
    price_per_tib: float = Field(
        6.25, ge=0, description="On-demand USD per TiB billed, for cost estimates in logs and metrics."
    )
    projects: Optional[str] = Field(None, description="Comma-separated projects to read (uses the table's clustering).")
    sample: Optional[float] = Field(
        None, gt=0, le=1, description="Fraction of downloads to read (deterministic on the timestamp)."
    )
    start: Optional[str] = Field(None, description="Historical pull from this ISO time or date (inclusive).")
    end: Optional[str] = Field(
        None, description="Historical pull up to this ISO time or date (exclusive); unset: continue live."
    )
    delay: Optional[float] = Field(None, ge=0, description="Pace the stream as live delayed by this many minutes.")
    poll_interval: float = Field(
        60.0, gt=0, description="Seconds between polls (lengthened so the daily budget lasts)."
    )
    overlap_minutes: float = Field(
        15.0, ge=0, description="Each poll re-reads this far behind the watermark to catch late loads."
    )
    export: Optional[Path] = Field(None, description="Also write every row read to this Parquet file.")

    # Dataflow
    lateness_seconds: float = Field(
        600.0, ge=0, description="Events later than this behind the watermark are dropped (and counted)."
    )
    out_of_order_seconds: float = Field(
        0.0,
        ge=0,
        description="Extra event-time seconds every partition must pass a window's end by before its early result.",
    )
    idle_seconds: float = Field(
        2.0, gt=0, description="A caught-up partition silent this long stops holding the watermark back."
    )
    future_tolerance_seconds: float = Field(
        DEFAULT_FUTURE_TOLERANCE_S,
        ge=0,
        le=31 * 86400,
        description="An event time more than this ahead of the wall "
        "clock is dead-lettered (timestamp_in_future), as is one before 2016 (timestamp_before_2016): the watermark, "
        "retention and 'today' follow the newest event, so one far-future event would otherwise drop every later "
        "event and delete every real window. Allows for clocks a little ahead, and stays below the lateness horizon.",
    )
    max_project_name_chars: int = Field(
        DEFAULT_MAX_PROJECT_NAME,
        ge=1,
        le=100_000,
        description="Longer project names are dead-lettered "
        "(project_name_too_long): a name is stored in every window, rollup row and index it reaches.",
    )
    epoch_seconds: float = Field(
        10.0,
        gt=0,
        description="Bytewax epoch (and recovery snapshot) interval: a crash replays at most this much input, and each snapshot copies the state still open (up to about 15 MB at 20,000 events/s, the minute being counted; closed state is written once, dataflow/spill.py), so shorter costs throughput.",
    )
    recovery: bool = Field(True, description="Enable Bytewax recovery under DATA_DIR/recovery.")
    workers: int = Field(1, ge=1, le=64, description="Bytewax worker threads.")
    block_writer: bool = Field(
        True,
        description="A live dataflow applies sealed rollup blocks (millions of rows every 10 minutes at full PyPI rate) in a process of its own, so that the worker keeps its core for the stream; a batch run does so for the blocks sealed before its end (started with the first); false: between window writes, in the worker.",
    )
    sink_retry_initial_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="A sink write that fails on a lock or a lost connection (SQLite locked, PostgreSQL restarting) is retried after this long, then twice as long each time up to sink_retry_max_seconds, until it succeeds; every write is idempotent, so nothing is lost or counted twice.",
    )
    sink_retry_max_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest wait between two attempts of a failing sink write: the longest the dataflow may take to notice that the sink is back.",
    )
    sink_lock_wait_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="SQLite: how long one write waits for another connection's write lock before it counts as failed (and is retried).",
    )
    sink_outage_log_seconds: float = Field(
        30.0,
        gt=0,
        description="While the sink is unavailable, the dataflow repeats its `sink.unavailable` log line this often.",
    )

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
        "256KiB", description="Largest request body the dashboard accepts (Dash callbacks, sign-in); larger: 413."
    )
    max_response_bytes: ByteSize = Field(
        "8MiB",
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

    _config_file: Optional[Path] = None

    @field_validator("source")
    @classmethod
    def _check_source(cls, v: str) -> str:
        if v in ("synthetic", "bigquery"):
            return v
        if v.startswith("file:"):
            from pypi_pulse.preflight import unreadable_file

            problem = unreadable_file(Path(v[5:]))
            if problem:
                raise ValueError(f"input file {problem}: pass file:PATH of an export (NDJSON, CSV or Parquet)")
            return v
        raise ValueError("must be 'synthetic', 'bigquery' or 'file:PATH'")

    @field_validator("credentials")
    @classmethod
    def _check_credentials(cls, v: Optional[Path]) -> Optional[Path]:
        from pypi_pulse.preflight import unreadable_file

        problem = v is not None and unreadable_file(v.expanduser())
        if problem:
            raise ValueError(
                f"credentials file {problem}: pass a service-account JSON key, or drop it to use "
                "Application Default Credentials"
            )
        return v

    @field_validator("data_dir")
    @classmethod
    def _check_data_dir(cls, v: Path) -> Path:
        if v.exists() and not v.is_dir():
            raise ValueError(f"{v} is not a directory: pass a directory (it is created if missing)")
        return v

    @field_validator("speed")
    @classmethod
    def _check_speed(cls, v: str) -> str:
        parse_speed(v)
        return v

    @field_validator("sink")
    @classmethod
    def _check_sink(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            return v
        raise ValueError("must look like sqlite:///path/to.db or postgresql://user:pass@host:5432/db")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        cfg = os.environ.get("PYPI_PULSE_CONFIG_FILE_RESOLVED")
        if cfg:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cfg))
        return tuple(sources)

    def linger_ms_for(self, embedded_broker: bool) -> int:
        """The producer's linger: as set, else longer on the embedded broker, whose cost grows with its batches."""
        if self.linger_ms is not None:
            return self.linger_ms
        return EMBEDDED_LINGER_MS if embedded_broker else DEFAULT_LINGER_MS

    def up_component_metrics_ports(self) -> tuple[int, int]:
        """The producer's and the dataflow's /metrics ports under `up`: as set, else beside the exporter's."""
        return (
            self.producer_metrics_port or self.metrics_port + 1,
            self.dataflow_metrics_port or self.metrics_port + 2,
        )

    def pack_events_for(self, own_topic: bool) -> int:
        """Events per Kafka message: as set, else packed only on a topic that pypi-pulse alone reads."""
        return self.pack_events or (OWN_TOPIC_PACK_EVENTS if own_topic else 1)

    @property
    def sink_url(self) -> str:
        return self.sink or f"sqlite:///{self.data_dir / 'pypi-pulse.db'}"

    @property
    def recovery_dir(self) -> Path:
        return self.data_dir / "recovery"


def parse_speed(v: str) -> Optional[float]:
    """`realtime` → 1.0, `10x` → 10.0, `max` → None (no pacing)."""
    s = v.strip().lower()
    if s == "max":
        return None
    if s == "realtime":
        return 1.0
    try:
        f = float(s[:-1] if s.endswith("x") else s)
    except ValueError:
        f = -1.0
    if f <= 0:
        raise ValueError(f"speed {v!r} must be 'realtime', 'max' or a positive multiplier like '10x'")
    return f


def load_settings(config_file: Optional[Path] = None, **overrides: Any) -> Settings:
    """Build settings from flags (overrides), environment and an optional TOML file; fail with a fixable message."""
    config_file = config_file or (
        Path(os.environ["PYPI_PULSE_CONFIG"]) if os.environ.get("PYPI_PULSE_CONFIG") else None
    )
    in_file: dict = {}
    if config_file is not None:
        in_file = _read_config_file(config_file)
        os.environ["PYPI_PULSE_CONFIG_FILE_RESOLVED"] = str(config_file)
    else:
        os.environ.pop("PYPI_PULSE_CONFIG_FILE_RESOLVED", None)
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "config"
        extra = Settings.model_fields[field].json_schema_extra if field in Settings.model_fields else None
        flag = extra["flag"] if isinstance(extra, dict) and "flag" in extra else "--" + field.replace("_", "-")
        env = "PYPI_PULSE_" + field.upper()
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and field in in_file:
            raise UserError(
                f"config file {config_file}: unknown setting {field!r}: its keys are setting names, "
                "like the flags without -- and with _ (rate, sink, lateness_seconds)"
            ) from None
        if field in in_file and field not in clean and env not in os.environ:
            flag += f" / {field} in {config_file}"
        raise UserError(f"invalid {field} ({flag} / {env}): {msg}") from None


def _read_config_file(path: Path) -> dict:
    """The TOML file's settings, read once here so that a broken file is one line naming it, the line and the
    problem (pydantic-settings reads it again, with the other sources)."""
    import tomllib

    from pypi_pulse.preflight import unreadable_file

    problem = unreadable_file(path)
    if problem:
        raise UserError(f"config file {problem}: pass an existing TOML file to --config (or PYPI_PULSE_CONFIG)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 TOML"
        ) from None
