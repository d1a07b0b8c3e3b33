"""What every command shares, whether it lives in pypi_pulse/cli.py or registers itself from its component
(dashboard, metrics, producer): the common options, settings with logging set up, the consoles, signal handling.

The component commands import these from here rather than from the CLI, which imports them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from pypi_pulse.config import Settings, load_settings

out = Console()
err = Console(stderr=True)

# Options shared by several commands (flags override PYPI_PULSE_* environment, which overrides --config).
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML file of settings (also PYPI_PULSE_CONFIG).")]
BootstrapOpt = Annotated[
    Optional[str], typer.Option("--bootstrap-servers", help="Kafka to use instead of the embedded broker.")
]
TopicOpt = Annotated[Optional[str], typer.Option("--topic", help="Topic of download events.")]
SinkOpt = Annotated[
    Optional[str], typer.Option("--sink", help="sqlite:///PATH.db or postgresql://... (default under --data-dir).")
]
HistoryOpt = Annotated[
    Optional[str],
    typer.Option("--history", help="Directory (or s3://... URL) of the rollup history (default: DATA_DIR/history)."),
]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Directory for embedded state.")]
LogOpt = Annotated[Optional[str], typer.Option("--log-level", help="debug | info | warning | error.")]
PartitionsOpt = Annotated[Optional[int], typer.Option("--partitions", help="Partitions when creating the topic.")]
PackOpt = Annotated[
    Optional[int],
    typer.Option(
        "--pack-events", help="Events per Kafka message (1: one per message, as a shared topic's consumers expect)."
    ),
]
OrderOpt = Annotated[
    Optional[str],
    typer.Option(
        "--order", help="File replay order: time (sorted by event second first, the default) | file (as it is)."
    ),
]
SortMemoryOpt = Annotated[
    Optional[str],
    typer.Option(
        "--sort-memory",
        help="File replay in time order: sorted in memory up to this size (default 1GiB), in spilled runs beyond.",
    ),
]
CompressionOpt = Annotated[
    Optional[str],
    typer.Option("--compression", help="Record batch compression: zstd (default) | lz4 | snappy | gzip | none."),
]
MetricsPortOpt = Annotated[
    Optional[int], typer.Option("--metrics-port", help="Serve this process's Prometheus /metrics on this port.")
]

# The dataflow's shape (`dataflow`, `run`): Bytewax's cluster runtime, dataflow/runner.py.
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-w", help="Bytewax worker threads per process.")]
ProcessesOpt = Annotated[
    Optional[int],
    typer.Option(
        "--processes",
        help="Run the dataflow as a local Bytewax cluster of this many processes; process i serves its metrics "
        "on --metrics-port + i.",
    ),
]
ProcessIdOpt = Annotated[
    Optional[int],
    typer.Option(
        "--process-id",
        help="This process's index in --addresses (a cluster over several machines); PYPI_PULSE_PROCESS_ID may "
        "give it as a StatefulSet pod's name, and PYPI_PULSE_CLUSTER_SIZE with PYPI_PULSE_CLUSTER_ADDRESS the "
        "addresses.",
    ),
]
AddressesOpt = Annotated[
    Optional[str],
    typer.Option("--addresses", help='Every process of the cluster, "HOST:PORT;HOST:PORT", the same on each machine.'),
]
ShardsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--shards",
        help="The dataflow's clocks (default 8), spread over workers and processes; a resumed dataflow keeps the "
        "number its recovery state was made with.",
    ),
]


def settings(config: Optional[Path] = None, **flags: Any) -> Settings:
    s = load_settings(config, **flags)
    from pypi_pulse import logs

    logs.setup(s.log_level, s.log_format)
    return s


def print_summary(title: str, summary: dict) -> None:
    table = Table(title=title, show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    err.print(table)


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def wait_forever(alive: Callable[[], bool]) -> None:
    stop = threading.Event()
    stop_on_signals(stop)
    while not stop.is_set() and alive():
        stop.wait(0.2)
