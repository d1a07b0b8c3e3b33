"""Bad settings fail fast: one line that says what is wrong and how to fix it, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port


def cli(*args, env=None, timeout=60):
    return subprocess.run(
        command_lines.cli(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
        stdin=subprocess.DEVNULL,
    )


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, env, expect",
    [
        (["produce", "--bootstrap-servers", "127.0.0.1:1", "--rate", "-5"], {}, "--rate"),
        (["produce", "--bootstrap-servers", "127.0.0.1:1", "--source", "ftp://x"], {}, "file:PATH"),
        (["produce", "--bootstrap-servers", "127.0.0.1:1", "--speed", "fast"], {}, "max"),
        (
            ["dataflow", "--bootstrap-servers", "127.0.0.1:1"],
            {"PYPI_PULSE_PARTITIONS": "lots"},
            "PYPI_PULSE_PARTITIONS",
        ),
        (["produce", "--bootstrap-servers", "127.0.0.1:1"], {"PYPI_PULSE_LINGER_MS": "-1"}, "PYPI_PULSE_LINGER_MS"),
        (
            ["windows", "--sink", "mysql://x", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"],
            {},
            "sqlite:///",
        ),
        (["produce", "--config", "/nonexistent/pulse.toml"], {}, "does not exist"),
    ],
)
def test_bad_values_give_one_fixable_line(args, env, expect):
    assert expect in one_line_error(cli(*args, env=env))


def test_unreachable_broker_says_how_to_fix_it():
    line = one_line_error(cli("dataflow", "--bootstrap-servers", f"127.0.0.1:{free_port()}", timeout=120))
    assert "cannot reach Kafka" in line and "--bootstrap-servers" in line


def test_missing_input_file_is_reported(tmp_path):
    line = one_line_error(
        cli(
            "run",
            "--source",
            f"file:{tmp_path / 'missing.ndjson'}",
            "--speed",
            "max",
            "--until-drained",
            "--sink",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--data-dir",
            str(tmp_path),
            timeout=180,
        )
    )
    assert "does not exist" in line


@pytest.mark.parametrize(
    "command",
    ["up", "dataflow", "run", "backfill --start 2026-01-01 --end 2026-01-02", "serve", "metrics", "history import"],
)
def test_a_history_that_cannot_be_a_directory_is_refused(tmp_path, command):
    a_file = tmp_path / "history"
    a_file.write_text("not a directory")
    for history, expect in ((a_file, f"{a_file} is not a directory"), (a_file / "sub", f"{a_file} is not a directory")):
        line = one_line_error(cli(*command.split(), "--history", str(history), "--data-dir", str(tmp_path)))
        assert line.startswith("error: invalid history (--history / PYPI_PULSE_HISTORY)") and expect in line, line
    line = one_line_error(cli(*command.split(), "--data-dir", str(tmp_path), env={"PYPI_PULSE_HISTORY": "ftp://h/x"}))
    assert "unknown scheme 'ftp'" in line and "s3" in line


def test_windows_on_a_missing_sink_says_what_to_run(tmp_path):
    line = one_line_error(
        cli(
            "windows",
            "--sink",
            f"sqlite:///{tmp_path / 'none.db'}",
            "--start",
            "2026-11-20T00:00:00Z",
            "--end",
            "2026-11-21T00:00:00Z",
        )
    )
    assert "pypi-pulse up" in line


def test_config_file_and_environment_are_read(tmp_path):
    cfg = tmp_path / "pulse.toml"
    cfg.write_text("rate = -1\n")
    assert "rate" in one_line_error(cli("produce", "--config", str(cfg), "--bootstrap-servers", "127.0.0.1:1"))
    # a flag overrides the file: now the next problem (no broker there) is reported instead
    line = one_line_error(
        cli(
            "produce",
            "--config",
            str(cfg),
            "--rate",
            "10",
            "--bootstrap-servers",
            f"127.0.0.1:{free_port()}",
            "--count",
            "1",
            timeout=120,
        )
    )
    assert "rate" not in line


@pytest.mark.parametrize("command", ["up", "broker", "produce", "dataflow", "run", "windows"])
def test_every_command_has_help(command):
    proc = cli(command, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout
