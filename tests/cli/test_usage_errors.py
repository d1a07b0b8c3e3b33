"""Command-line usage errors print click's usage message and exit 2, never a traceback; help shows no `<bool>`."""

from __future__ import annotations

import pytest
from pulse_testing import run_pulse

COMMANDS = [
    "broker",
    "produce",
    "dataflow",
    "run",
    "windows",
    "up",
    "serve",
    "metrics",
    "backfill",
    "users",
    "users add",
    "users remove",
    "users list",
    "users token",
]


@pytest.mark.parametrize(
    "args, usage, message",
    [
        (["lol"], "Usage: pypi-pulse [OPTIONS] COMMAND", "No such command 'lol'"),
        (["up", "--prot", "9000"], "Usage: pypi-pulse up [OPTIONS]", "No such option: --prot"),
        (
            ["windows", "--end", "2026-11-21T00:00:00Z"],
            "Usage: pypi-pulse windows [OPTIONS]",
            "Missing option '--start'",
        ),
        (["serve", "--public-api", "true"], "Usage: pypi-pulse serve [OPTIONS]", "unexpected extra argument"),
        (["run", "--count", "many"], "Usage: pypi-pulse run [OPTIONS]", "Invalid value for '--count'"),
        (["users", "add"], "Usage: pypi-pulse users add [OPTIONS]", "Missing argument 'name'"),
    ],
)
def test_usage_error_prints_usage_and_exits_2(args, usage, message):
    proc, _ = run_pulse(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert usage in proc.stderr and message in proc.stderr and "--help" in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [[], ["users"]])
def test_no_command_prints_the_help_and_exits_2_as_click_does(args):
    # click >= 8.2 treats no_args_is_help as a usage error: the help goes to stderr, exit code 2
    proc, _ = run_pulse(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Usage: pypi-pulse" in proc.stderr and "Commands:" in proc.stderr


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_no_bool_type_on_flags(command):
    proc, _ = run_pulse(*command.split(), "--help")
    assert proc.returncode == 0 and "Usage: pypi-pulse" in proc.stdout, proc.stderr
    assert "<bool>" not in proc.stdout, proc.stdout
    assert "--help" in proc.stdout


def test_up_help_lists_its_serving_flags():
    proc, _ = run_pulse("up", "--help")
    for flag in ("--host", "--public-api", "--no-backfill", "--port", "--metrics-port", "--broker-port"):
        assert flag in proc.stdout, flag
