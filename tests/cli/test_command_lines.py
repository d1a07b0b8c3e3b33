"""The command lines `up`, the tests and the benchmarks start pypi-pulse with (pypi_pulse/command_lines.py) are ones
the CLI accepts, with the flags their callers add. Each is parsed by the real CLI up to `--help`: click refuses an
unknown option or a missing value before it shows the help, so exit 0 means every flag was understood."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from pypi_pulse import command_lines
from pypi_pulse.cli import app

SINK = "sqlite:///pulse.db"

BUILT = {
    "dataflow": command_lines.dataflow(
        "127.0.0.1:1",
        "downloads",
        SINK,
        "data",
        "--history",
        "history",
        "--no-recovery",
        "--lateness-seconds",
        "60",
        "--metrics-port",
        "9200",
        "--log-level",
        "warning",
        "--until-drained",
        "--processes",
        "2",
    ),
    "produce": command_lines.produce(
        "127.0.0.1:1",
        "downloads",
        "data",
        "--source",
        "synthetic",
        "--rate",
        "100",
        "--duration",
        "5",
        "--seed",
        "1",
        "--pack-events",
        "1000",
        "--no-progress",
    ),
    "run": command_lines.replay("export.ndjson", SINK, "data", "--json", "--processes", "2", "--log-level", "info"),
    "serve": command_lines.serve(
        8050,
        SINK,
        "data",
        "--history",
        "history",
        "--workers",
        "2",
        "--public-api",
        "--host",
        "127.0.0.1",
        "--log-level",
        "info",
    ),
    "up": command_lines.up(
        "data", "--rate", "300", "--seed", "1", "--host", "127.0.0.1", "--port", "8050", "--public-api", "--no-backfill"
    ),
}


@pytest.mark.parametrize("command", sorted(BUILT))
def test_each_built_command_line_runs_the_cli_under_this_interpreter_with_flags_it_accepts(command):
    argv = BUILT[command]
    assert argv[:4] == [sys.executable, "-m", "pypi_pulse.cli", command]
    result = CliRunner().invoke(app, [*argv[3:], "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: pypi-pulse {command} [OPTIONS]" in result.output


def test_a_flag_the_cli_does_not_know_fails_the_same_parse():
    """What makes the check above mean something: the same parse refuses a wrong flag."""
    result = CliRunner().invoke(app, [*command_lines.dataflow("b", "t", SINK, "data", "--lateness")[3:], "--help"])
    assert result.exit_code == 2 and "No such option: --lateness" in result.output, result.output


def test_the_replay_reads_the_file_as_fast_as_it_goes_until_every_event_is_stored():
    argv = command_lines.replay("exports/day.ndjson", SINK, "data")
    assert argv[argv.index("--source") + 1] == "file:exports/day.ndjson"
    assert argv[argv.index("--speed") + 1] == "max" and "--until-drained" in argv
