"""The argv that starts a pypi-pulse command in another process: `up` starts its children with it, the tests and
benchmarks their pipelines and servers. One builder a command, so that the flags a command needs to run at all are
spelled in one place, and whatever starts it adds only the flags of its own case.

Each is `python -m pypi_pulse.cli` under this interpreter, not the `pypi-pulse` entry point found on PATH: the
child runs the code its starter runs (a virtualenv's, or a copy a benchmark points PYTHONPATH at).
"""

from __future__ import annotations

import os
import sys

StrPath = str | os.PathLike[str]


def cli(*args: str) -> list[str]:
    """`pypi-pulse ARGS`."""
    return [sys.executable, "-m", "pypi_pulse.cli", *args]


def dataflow(bootstrap: str, topic: str, sink: str, data_dir: StrPath, *extra: str) -> list[str]:
    """`pypi-pulse dataflow` reading `topic` at `bootstrap` into `sink`, its recovery store under `data_dir`."""
    return cli(
        "dataflow",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--sink",
        sink,
        "--data-dir",
        str(data_dir),
        *extra,
    )


def produce(bootstrap: str, topic: str, data_dir: StrPath, *extra: str) -> list[str]:
    """`pypi-pulse produce` publishing to `topic` at `bootstrap`; `extra` names the source and its pace."""
    return cli("produce", "--bootstrap-servers", bootstrap, "--topic", topic, "--data-dir", str(data_dir), *extra)


def replay(export: StrPath, sink: str, data_dir: StrPath, *extra: str) -> list[str]:
    """`pypi-pulse run` replaying the file `export` into `sink` as fast as it goes, exiting once every event is
    stored (the embedded broker, producer and dataflow in one command)."""
    return cli(
        "run",
        "--source",
        f"file:{export}",
        "--speed",
        "max",
        "--until-drained",
        "--sink",
        sink,
        "--data-dir",
        str(data_dir),
        *extra,
    )


def serve(port: int, sink: str, data_dir: StrPath, *extra: str) -> list[str]:
    """`pypi-pulse serve`: the dashboard and the JSON API of `sink` on `port`."""
    return cli("serve", "--port", str(port), "--sink", sink, "--data-dir", str(data_dir), *extra)


def up(data_dir: StrPath, *extra: str) -> list[str]:
    """`pypi-pulse up`: the whole system on the embedded defaults, its sink, history and logs under `data_dir`."""
    return cli("up", "--data-dir", str(data_dir), *extra)
