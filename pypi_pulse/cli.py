"""The `pypi-pulse` command: one entry point for every component, alone or all together (`up`)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from pypi_pulse import assembly
from pypi_pulse.cli_support import (
    AddressesOpt,
    BootstrapOpt,
    CompressionOpt,
    ConfigOpt,
    DataDirOpt,
    HistoryOpt,
    LogOpt,
    MetricsPortOpt,
    OrderOpt,
    PackOpt,
    PartitionsOpt,
    ProcessesOpt,
    ProcessIdOpt,
    ShardsOpt,
    SinkOpt,
    SortMemoryOpt,
    TopicOpt,
    WorkersOpt,
    out,
    print_summary,
    settings,
    stop_on_signals,
    wait_forever,
)
from pypi_pulse.errors import UserError, usage_error_types

app = typer.Typer(
    name="pypi-pulse",
    help="Live, per-second monitoring and history of PyPI downloads (Kafka → Bytewax → SQLite/PostgreSQL → Dash).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: typer's rich panels print `<bool>` beside every flag, and wrap at 80 columns off a terminal
    rich_markup_mode=None,
)


# ---------------------------------------------------------------------------------------------------------------
@app.command()
def broker(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")] = 9092,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = None,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory-only) until Ctrl-C."""
    from pypi_pulse.broker import EmbeddedBroker

    s = settings(config, data_dir=data_dir, log_level=log_level, broker_port=port)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(port=s.broker_port, log_path=s.data_dir / "broker.log") as b:
        out.print(f"broker: Kafka protocol on [bold]{b.bootstrap}[/] (memory-only; Ctrl-C stops it)")
        wait_forever(lambda: b.proc is not None and b.proc.poll() is None)
        if b.proc is not None and b.proc.poll() is not None:
            raise UserError(
                f"the embedded broker exited with code {b.proc.returncode}; see {s.data_dir / 'broker.log'}"
            )


@app.command()
def produce(
    source: Annotated[Optional[str], typer.Option("--source", help="synthetic | file:PATH | bigquery")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="Synthetic events per second (default 1000).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for a reproducible synthetic stream.")] = None,
    speed: Annotated[Optional[str], typer.Option("--speed", help="File replay pace: realtime | Nx | max.")] = None,
    restamp: Annotated[
        Optional[bool], typer.Option("--restamp/--no-restamp", help="Shift replayed timestamps to now.")
    ] = None,
    order: OrderOpt = None,
    sort_memory: SortMemoryOpt = None,
    compression: CompressionOpt = None,
    count: Annotated[Optional[int], typer.Option("--count", help="Stop after this many synthetic events.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar for file replays.")] = True,
    max_bytes_per_query: Annotated[
        Optional[str],
        typer.Option("--max-bytes-per-query", help="BigQuery: maximum_bytes_billed of every query (e.g. 200GB)."),
    ] = None,
    daily_budget: Annotated[
        Optional[str],
        typer.Option("--daily-budget", help="BigQuery: bytes billed per UTC day before polling stops (e.g. 500GB)."),
    ] = None,
    projects: Annotated[
        Optional[str], typer.Option("--projects", help="BigQuery: only these projects (comma-separated).")
    ] = None,
    sample: Annotated[
        Optional[float], typer.Option("--sample", help="BigQuery: read this fraction of downloads (0-1].")
    ] = None,
    start: Annotated[
        Optional[str], typer.Option("--start", help="BigQuery: historical pull from this ISO date/time.")
    ] = None,
    end: Annotated[
        Optional[str], typer.Option("--end", help="BigQuery: historical pull up to this ISO date/time (exclusive).")
    ] = None,
    delay: Annotated[
        Optional[float], typer.Option("--delay", help="BigQuery: pace as live, delayed by this many minutes.")
    ] = None,
    poll_interval: Annotated[
        Optional[float], typer.Option("--poll-interval", help="BigQuery: seconds between polls (default 60).")
    ] = None,
    export: Annotated[
        Optional[Path], typer.Option("--export", help="BigQuery: also write the rows read to this Parquet file.")
    ] = None,
    billing_project: Annotated[
        Optional[str], typer.Option("--billing-project", help="BigQuery: Google Cloud project billed for queries.")
    ] = None,
    credentials: Annotated[
        Optional[Path], typer.Option("--credentials", help="BigQuery: service-account key file (default: ADC).")
    ] = None,
    bigquery_endpoint: Annotated[
        Optional[str], typer.Option("--bigquery-endpoint", help="BigQuery API URL (emulators, tests).")
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    topic: TopicOpt = None,
    partitions: PartitionsOpt = None,
    pack_events: PackOpt = None,
    metrics_port: MetricsPortOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = None,
) -> None:
    """Publish download events to Kafka from a synthetic, file or BigQuery source."""
    s = settings(
        config,
        source=source,
        rate=rate,
        seed=seed,
        speed=speed,
        restamp=restamp,
        order=order,
        sort_memory=sort_memory,
        compression=compression,
        pack_events=pack_events,
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        partitions=partitions,
        data_dir=data_dir,
        log_level=log_level,
        producer_metrics_port=metrics_port,
        max_bytes_per_query=max_bytes_per_query,
        daily_budget=daily_budget,
        projects=projects,
        sample=sample,
        start=start,
        end=end,
        delay=delay,
        poll_interval=poll_interval,
        export=export,
        billing_project=billing_project,
        credentials=credentials,
        bigquery_endpoint=bigquery_endpoint,
    )
    if not s.bootstrap_servers:
        raise UserError(
            "produce needs a broker: pass --bootstrap-servers HOST:PORT (start one with `pypi-pulse broker`)"
        )
    if s.producer_metrics_port:
        import pypi_pulse.metrics.producer_metrics  # noqa: F401  (registers the producer collector)
        from pypi_pulse.metrics.endpoint import serve
        from pypi_pulse.metrics.liveness import PRODUCER

        serve(s.metrics_host, s.producer_metrics_port, liveness=PRODUCER, stale_after_s=s.healthz_stale_seconds)
    stop = threading.Event()
    stop_on_signals(stop)
    summary = assembly.produce(s, s.bootstrap_servers, stop, count=count, duration=duration, progress=progress)
    print_summary("producer", summary.as_dict())
    if summary.input_error:
        raise UserError(f"input damaged: {summary.input_error}")


@app.command()
def dataflow(
    until_drained: Annotated[
        bool, typer.Option("--until-drained", help="Exit once every partition stays at its end for --idle-seconds.")
    ] = False,
    workers: WorkersOpt = None,
    processes: ProcessesOpt = None,
    process_id: ProcessIdOpt = None,
    addresses: AddressesOpt = None,
    shards: ShardsOpt = None,
    recovery: Annotated[
        Optional[bool], typer.Option("--recovery/--no-recovery", help="Bytewax recovery under DATA_DIR/recovery.")
    ] = None,
    lateness_seconds: Annotated[
        Optional[float], typer.Option("--lateness-seconds", help="Accept events this late (default 600).")
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    topic: TopicOpt = None,
    sink: SinkOpt = None,
    history: HistoryOpt = None,
    metrics_port: MetricsPortOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = None,
) -> None:
    """Run the Bytewax dataflow: 1-second windows, top-10, daily rollups, into the sink."""
    s = settings(
        config,
        workers=workers,
        processes=processes,
        shards=shards,
        recovery=recovery,
        lateness_seconds=lateness_seconds,
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        sink=sink,
        history=history,
        data_dir=data_dir,
        log_level=log_level,
        dataflow_metrics_port=metrics_port,
    )
    if s.processes > 1:  # its members import the dataflow while this process does (dataflow/early_members.py)
        from pypi_pulse.dataflow.early_members import start_early

        start_early(s.processes)
    member, members = assembly.cluster_members(s, process_id, addresses)  # a bad shape fails before anything waits
    if not s.bootstrap_servers:
        raise UserError(
            "dataflow needs a broker: pass --bootstrap-servers HOST:PORT (start one with `pypi-pulse broker`)"
        )
    cfg = assembly.dataflow_config(s, until_drained)
    from pypi_pulse.dataflow.source import STOP

    stop_on_signals(STOP)  # graceful: inputs end, the epoch completes, the process exits 0
    assembly.run_dataflow(s, cfg, recovery=s.recovery, metrics=True, process_id=member, addresses=members)


@app.command()
def run(
    source: Annotated[Optional[str], typer.Option("--source", help="synthetic | file:PATH | bigquery")] = None,
    speed: Annotated[Optional[str], typer.Option("--speed", help="File replay pace: realtime | Nx | max.")] = None,
    until_drained: Annotated[
        bool, typer.Option("--until-drained", help="Exit 0 once every event is in the sink.")
    ] = False,
    count: Annotated[Optional[int], typer.Option("--count", help="Synthetic source: this many events.")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", help="Synthetic events per second.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    restamp: Annotated[Optional[bool], typer.Option("--restamp/--no-restamp")] = None,
    order: OrderOpt = None,
    sort_memory: SortMemoryOpt = None,
    compression: CompressionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    bootstrap_servers: BootstrapOpt = None,
    topic: TopicOpt = None,
    sink: SinkOpt = None,
    history: HistoryOpt = None,
    partitions: PartitionsOpt = None,
    pack_events: PackOpt = None,
    workers: WorkersOpt = None,
    processes: ProcessesOpt = None,
    shards: ShardsOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = None,
) -> None:
    """Batch mode: push a source through broker, dataflow and sink; with --until-drained, exit when all is stored."""
    s = settings(
        config,
        source=source,
        speed=speed,
        rate=rate,
        seed=seed,
        restamp=restamp,
        order=order,
        sort_memory=sort_memory,
        compression=compression,
        pack_events=pack_events,
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        sink=sink,
        history=history,
        partitions=partitions,
        workers=workers,
        processes=processes,
        shards=shards,
        data_dir=data_dir,
        log_level=log_level,
    )
    if not until_drained and s.source == "synthetic" and count is None:
        raise UserError(
            "run needs an end: pass --until-drained with a file source, or --count N; for a live system use `pypi-pulse up`"
        )
    from pypi_pulse.pipeline import run_batch

    result = run_batch(s, count=count, show_progress=not as_json and sys.stderr.isatty())
    if as_json:
        print(json.dumps(result))
    else:
        print_summary("run", result)
    if "input_error" in result:  # every event read is stored; those past the damage were never read
        raise UserError(f"input damaged: {result['input_error']}")


@app.command()
def up(
    rate: Annotated[Optional[float], typer.Option("--rate", help="Synthetic events per second (default 1000).")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="synthetic | file:PATH | bigquery")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    bootstrap_servers: BootstrapOpt = None,
    sink: SinkOpt = None,
    history: HistoryOpt = None,
    partitions: PartitionsOpt = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Dashboard port (default 8050).")] = None,
    metrics_port: Annotated[
        Optional[int], typer.Option("--metrics-port", help="Prometheus exporter port (default 9108).")
    ] = None,
    broker_port: Annotated[
        Optional[int], typer.Option("--broker-port", help="Embedded broker port (default 9092; 0: any free port).")
    ] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Dashboard bind address (default 127.0.0.1).")] = None,
    public_api: Annotated[
        bool, typer.Option("--public-api", help="Let anyone read GET /api/... without signing in.")
    ] = False,
    no_backfill: Annotated[
        bool, typer.Option("--no-backfill", help="Do not fill an empty sink with synthetic history.")
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    log_level: LogOpt = None,
) -> None:
    """Start everything on the embedded defaults: broker, producer, dataflow, sink, dashboard, metrics."""
    from pypi_pulse.preflight import check_listeners, up_listeners
    from pypi_pulse.supervisor import run_all

    s = settings(
        config,
        rate=rate,
        source=source,
        seed=seed,
        bootstrap_servers=bootstrap_servers,
        sink=sink,
        history=history,
        partitions=partitions,
        port=port,
        metrics_port=metrics_port,
        broker_port=broker_port,
        host=host,
        public_api=public_api or None,
        backfill_days=0 if no_backfill else None,
        data_dir=data_dir,
        log_level=log_level,
    )
    check_listeners(up_listeners(s))  # before anything starts: children on someone else's port die and restart
    if s.bootstrap_servers:
        from pypi_pulse.broker import wait_for_kafka

        wait_for_kafka(s.bootstrap_servers, timeout=10)
    assembly.check_sink(s)
    run_all(s, config)


def _register_plugins() -> None:
    """Commands that live with their component (windows, serve, metrics, users, backfill) register themselves here."""
    import importlib

    for module in (
        "pypi_pulse.sink.commands",
        "pypi_pulse.dashboard.commands",
        "pypi_pulse.metrics.commands",
        "pypi_pulse.producer.commands",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        mod.register(app)


_register_plugins()


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")  # one line, never wrapped
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except usage_error_types() as exc:  # usage errors: click's usage line and message; a bare command: its help
        exc.show()
        sys.exit(2)  # as click >= 8.2 does for both


if __name__ == "__main__":
    main()
