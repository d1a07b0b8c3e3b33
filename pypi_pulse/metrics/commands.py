"""`pypi-pulse metrics`: the Prometheus exporter of download data and pipeline counters read from the sink."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def metrics(
        sink: Annotated[
            Optional[str],
            typer.Option("--sink", help="sqlite:///PATH.db or postgresql://... (default under --data-dir)."),
        ] = None,
        history: Annotated[
            Optional[str],
            typer.Option(
                "--history", help="Directory (or s3://... URL) of the rollup history (default: DATA_DIR/history)."
            ),
        ] = None,
        host: Annotated[Optional[str], typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
        port: Annotated[Optional[int], typer.Option("--port", help="Port of /metrics (default 9108).")] = None,
        span_seconds: Annotated[
            Optional[int],
            typer.Option(
                "--span-seconds", help="Per-second rates are the mean over this many newest seconds (default 10)."
            ),
        ] = None,
        config: Annotated[
            Optional[Path], typer.Option("--config", help="TOML file of settings (also PYPI_PULSE_CONFIG).")
        ] = None,
        data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Directory for embedded state.")] = None,
        log_level: Annotated[Optional[str], typer.Option("--log-level", help="debug | info | warning | error.")] = None,
    ) -> None:
        """Serve Prometheus metrics read from the sink: download rates, countries, top packages, pipeline counters."""
        from rich.console import Console

        from pypi_pulse.cli_support import settings, wait_forever
        from pypi_pulse.metrics.endpoint import serve
        from pypi_pulse.metrics.sink_collector import build_registry
        from pypi_pulse.preflight import check_sink_for_reading
        from pypi_pulse.sink.base import open_sink
        from pypi_pulse.sink.read_pool import ReadPool

        s = settings(
            config,
            sink=sink,
            history=history,
            metrics_host=host,
            metrics_port=port,
            metrics_span_seconds=span_seconds,
            data_dir=data_dir,
            log_level=log_level,
        )
        check_sink_for_reading(s.sink_url)  # a sink in no existing directory, or no database: refused, not created
        open_sink(
            s.sink_url, history=s.history_path
        ).close()  # creates the schema if the dataflow has not yet, and fails fast on a bad URL
        pool = ReadPool(
            s.sink_url,
            history=s.history_path,
            max_size=s.sink_read_connections,
            wait_s=s.sink_read_wait_seconds,
            check_timeout_s=s.readyz_timeout_seconds,
        )
        registry, collector = build_registry(s.sink_url, span_s=s.metrics_span_seconds, opener=pool.opener)
        server, _ = serve(s.metrics_host, s.metrics_port, registry, flag="--port", readiness=pool.check)
        Console(stderr=True).print(f"metrics: http://{s.metrics_host}:{s.metrics_port}/metrics (sink {s.sink_url})")
        try:
            wait_forever(lambda: True)
        finally:
            server.shutdown()
            collector.close()
            pool.close()
