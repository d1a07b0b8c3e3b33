"""The settings of the pipeline: Kafka, storage, the producers (BigQuery included) and the dataflow.

One group of `pypi_pulse.config.Settings`, which is where settings are read, validated and documented as one set
(flags, `PYPI_PULSE_*` environment, TOML); kept here so that each module stays readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import ByteSize, Field
from pydantic_settings import BaseSettings

from pypi_pulse.bounds import DEFAULT_FUTURE_TOLERANCE_S, DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_PROJECT_NAME
from pypi_pulse.events import PACK_MAX_BYTES

DEFAULT_DATA_DIR = Path("pypi-pulse-data")
OWN_TOPIC_PACK_EVENTS = 1000  # on a topic only pypi-pulse reads, Kafka's per-message cost is worth sharing
# A live producer sends a message to every partition each 50 ms tick; waiting lets the client put several ticks in one
# record batch per partition. The embedded broker's cost per batch appended grows with the batches it holds: at
# 20,000 events/s and 20 ms its CPU went 0.38 -> 0.79 of a core in three minutes; at 100 ms it grows about 0.03 of a
# core a minute, at 200 ms about 0.007, for 0.1 s more at the median (benchmarks/latency.py).
DEFAULT_LINGER_MS = 100
EMBEDDED_LINGER_MS = 200
Compression = Literal["zstd", "lz4", "snappy", "gzip", "none"]
DEFAULT_COMPRESSION: Compression = "zstd"  # of record batches (setting `compression`)
DEFAULT_BROKER_OUTAGE_LOG_S = 30.0
DEFAULT_PRODUCER_STALL_S = 5.0
DEFAULT_PRODUCER_STOP_S = 1.5
# Bytes of messages the producer holds until Kafka acknowledges them: about 6 s of PyPI's 66,000 events/s (700 bytes
# each). A bound on messages alone does not bound memory: a packed message holds up to 1,000 events.
DEFAULT_PRODUCER_MAX_PENDING_BYTES = 256 * 2**20
DEFAULT_OFFSET_RESET_CONFIRM_S = 1.0
DEFAULT_SHARDS = 8  # the dataflow's clocks (setting `shards`): more than the workers of a small cluster


class PipelineSettings(BaseSettings):
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
    producer_max_pending_bytes: ByteSize = Field(
        ByteSize(DEFAULT_PRODUCER_MAX_PENDING_BYTES),
        ge=2 * PACK_MAX_BYTES,
        le=2**40,
        description="Bytes of messages (events, packed or not) the producer holds until Kafka "
        "acknowledges them, kept to be sent again after a broker restart; when they reach it, as when "
        "queue.buffering.max.messages of them wait, the source waits instead of growing (a slow, stopped or "
        "starved broker). The Kafka client's queue.buffering.max.kbytes is set to the same, and it copies what it "
        "has not sent, so the process holds up to about twice this besides its own working set (e.g. 256MiB, 1GiB).",
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
    history: Optional[str] = Field(
        None,
        description="Directory of the rollup history's Parquet files (docs/history.md), or a URL pyarrow opens "
        "(s3://bucket/prefix, gs://...); default: DATA_DIR/history, or beside a SQLite sink given elsewhere.",
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
        ByteSize(2**30),  # 1GiB
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
    compression: Compression = Field(
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
        ByteSize(DEFAULT_MAX_EVENT_BYTES),
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
        ByteSize(500 * 10**9), description="maximum_bytes_billed of every query: it fails instead of billing more."
    )
    daily_budget: ByteSize = Field(
        ByteSize(10**12), description="Bytes billed per UTC day before polling stops (e.g. 500GB, 2TiB)."
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
    workers: int = Field(1, ge=1, le=64, description="Bytewax worker threads per process.")
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Dataflow processes on this machine, a local Bytewax cluster (`dataflow`, `run`); for several machines run one `dataflow` per machine with --process-id and --addresses.",
    )
    process_id: Optional[str] = Field(
        None,
        description="`dataflow --process-id`: this member's index in a cluster over several machines, a number or a StatefulSet pod's name ending in its ordinal (`pypi-pulse-dataflow-3` is 3), so that a pod can set it from its metadata.name.",
    )
    cluster_size: Optional[int] = Field(
        None,
        ge=1,
        le=64,
        description="Members of a cluster over several machines (a StatefulSet's replicas); with cluster_address, the members' addresses are made from it instead of listed in --addresses.",
    )
    cluster_address: Optional[str] = Field(
        None,
        description="Each member's HOST:PORT, {i} standing for its index (with cluster_size): on Kubernetes the pods' names in the peers' headless Service, e.g. pypi-pulse-dataflow-{i}.pypi-pulse-dataflow-peers.pypi-pulse.svc:2101.",
    )
    cluster_wait_seconds: float = Field(
        300.0,
        gt=0,
        description="A member of a cluster over several machines waits this long for its own address to resolve (a pod's DNS name appears just after it starts) and, but for member 0, for member 0 to make the recovery store they share; then it fails saying what it waited for.",
    )
    cluster_stop_seconds: float = Field(
        15.0,
        gt=0,
        description="A member of a cluster over several machines told to stop (SIGTERM) ends its inputs, and the cluster ends cleanly with a last snapshot once every member has stopped (a StatefulSet scaled to 0 takes a second or two). A member stopped alone (a pod evicted or deleted) would wait for the others until killed: after this long it exits with an error instead, so that the others restart and resume with it from the last snapshot. Keep it below the pod's terminationGracePeriodSeconds.",
    )
    shards: int = Field(
        DEFAULT_SHARDS,
        ge=1,
        le=4096,
        description="The dataflow's clocks, keyed by a stable hash of the project: the work Bytewax spreads over workers and processes. More than workers x processes; a restarted dataflow must keep the number its recovery state was made with.",
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
