"""A broken config file, a sink that is no database or does not exist, an input path that is a directory: the
installed command says so in one line on stderr, exits 2, and starts nothing (no port left listening, no process
left behind)."""

from __future__ import annotations

import os

import pytest
from pulse_testing import marked_processes, port_is_free, run_pulse

from pypi_pulse.broker import free_port

WINDOW_RANGE = ["--start", "2026-11-20T00:00:00Z", "--end", "2026-11-21T00:00:00Z"]


def refused(args: list[str], *, ports: tuple[int, ...] = (), timeout: float = 60) -> str:
    """Run the command; assert one `error:` line, exit 2, no traceback, nothing left running or listening; return
    the line."""
    proc, mark = run_pulse(*args, timeout=timeout)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not marked_processes(mark), "a process it started is still running"
    for port in ports:
        assert port_is_free(port), f"port {port} is still listening"
    return lines[0]


@pytest.fixture
def not_a_database(tmp_path):
    path = tmp_path / "pulse.db"
    path.write_bytes(b"these bytes are a text file that someone named .db, not an SQLite database\n" * 20)
    return path


def test_broken_toml_names_the_file_the_line_and_the_problem(tmp_path):
    cfg = tmp_path / "pulse.toml"
    cfg.write_text('rate = 2000\nsink = "sqlite:///x.db\n')  # an unterminated string on line 2
    port = free_port()
    for args in (
        ["produce", "--bootstrap-servers", "127.0.0.1:1"],
        ["serve", "--port", str(port)],
        ["windows", *WINDOW_RANGE],
    ):
        line = refused([*args, "--config", str(cfg), "--data-dir", str(tmp_path)], ports=(port,))
        assert str(cfg) in line and "line 2" in line and "TOML" in line, line


def test_unknown_key_and_directory_as_config_file_are_one_line(tmp_path):
    cfg = tmp_path / "pulse.toml"
    cfg.write_text("rates = 2000\n")
    line = refused(["produce", "--bootstrap-servers", "127.0.0.1:1", "--config", str(cfg)])
    assert "unknown setting 'rates'" in line and str(cfg) in line
    line = refused(["produce", "--bootstrap-servers", "127.0.0.1:1", "--config", str(tmp_path)])
    assert "is a directory" in line


@pytest.mark.parametrize("command", ["serve", "metrics", "windows", "run"])
def test_sink_file_that_is_not_a_database_is_refused(command, not_a_database, tmp_path):
    before = not_a_database.read_bytes()
    port = free_port()
    sink = ["--sink", f"sqlite:///{not_a_database}"]
    args = {
        "serve": ["serve", *sink, "--port", str(port), "--data-dir", str(tmp_path)],
        "metrics": ["metrics", *sink, "--port", str(port), "--data-dir", str(tmp_path)],
        "windows": ["windows", *sink, *WINDOW_RANGE],
        "run": ["run", *sink, "--count", "100", "--data-dir", str(tmp_path)],
    }[command]
    line = refused(args, ports=(port,), timeout=120)
    assert "file is not a database" in line and str(not_a_database) in line, line
    assert not_a_database.read_bytes() == before  # refused, not overwritten


@pytest.mark.parametrize("command", ["run", "produce"])
def test_directory_given_as_input_file_says_it_is_a_directory(command, tmp_path):
    args = ["--source", f"file:{tmp_path}", "--data-dir", str(tmp_path / "data")]
    if command == "run":
        args += ["--until-drained", "--speed", "max", "--sink", f"sqlite:///{tmp_path / 'x.db'}"]
    else:
        args += ["--bootstrap-servers", f"127.0.0.1:{free_port()}"]
    line = refused([command, *args], timeout=120)
    assert f"{tmp_path} is a directory" in line and "--source" in line, line
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "data").exists()


def test_missing_credentials_file_and_a_data_dir_that_is_a_file_are_one_line(tmp_path):
    key = tmp_path / "key.json"
    line = refused(
        [
            "produce",
            "--source",
            "bigquery",
            "--credentials",
            str(key),
            "--billing-project",
            "p",
            "--bootstrap-servers",
            f"127.0.0.1:{free_port()}",
        ]
    )  # told before any broker is tried
    assert f"{key} does not exist" in line and "--credentials" in line, line
    a_file = tmp_path / "state"
    a_file.write_text("not a directory")
    for args in (["broker", "--port", "0"], ["run", "--count", "10"]):
        line = refused([*args, "--data-dir", str(a_file)])
        assert f"{a_file} is not a directory" in line and "--data-dir" in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: no permission error to provoke")
def test_unreadable_input_file_is_one_line(tmp_path):
    export = tmp_path / "export.ndjson"
    export.write_text('{"timestamp": "2026-11-20 00:00:00 UTC", "project": "rich"}\n')
    export.chmod(0)
    line = refused(["run", "--source", f"file:{export}", "--until-drained", "--data-dir", str(tmp_path)])
    assert "permission denied" in line


@pytest.mark.parametrize("command", ["serve", "metrics"])
def test_serve_and_metrics_refuse_a_sink_that_does_not_exist(command, tmp_path):
    port = free_port()
    missing = tmp_path / "no" / "such" / "dir" / "pulse.db"
    line = refused(
        [command, "--sink", f"sqlite:///{missing}", "--port", str(port), "--data-dir", str(tmp_path)], ports=(port,)
    )
    assert "no such sink" in line and "--sink" in line, line
    assert not missing.parent.exists()  # not created either


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["serve", "metrics"])
def test_serve_and_metrics_refuse_a_postgres_sink_they_cannot_use(command, postgres_url, tmp_path):
    from urllib.parse import urlsplit

    url = urlsplit(postgres_url)
    wrong_password = url._replace(netloc=f"{url.username}:not-the-password@{url.hostname}:{url.port}").geturl()
    nobody_there = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{free_port()}").geturl()
    for sink, expect in ((wrong_password, "rejected the credentials"), (nobody_there, "cannot reach PostgreSQL")):
        port = free_port()
        line = refused([command, "--sink", sink, "--port", str(port), "--data-dir", str(tmp_path)], ports=(port,))
        assert expect in line, line
