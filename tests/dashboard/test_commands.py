"""`pypi-pulse users ...`, `pypi-pulse serve` and the first-user hook of `up`, run as the real command."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import requests

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port
from pypi_pulse.config import load_settings
from pypi_pulse.dashboard.commands import FIRST_USER, before_up
from pypi_pulse.dashboard.users import UserStore


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(command_lines.cli(*args), input=stdin, capture_output=True, text=True, timeout=60)


def test_users_add_list_token_remove(tmp_path):
    d = str(tmp_path)
    r = cli("users", "add", "bob", "--password-stdin", "--data-dir", d, stdin="s3cret-password\n")
    assert r.returncode == 0, r.stderr
    assert UserStore(tmp_path).verify_password("bob", "s3cret-password")

    r = cli("users", "add", "bob", "--password-stdin", "--data-dir", d, stdin="another-password\n")
    assert r.returncode == 2 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    r = cli("users", "add", "eve", "--password-stdin", "--data-dir", d, stdin="")
    assert r.returncode == 2 and "no password on stdin" in r.stderr

    r = cli("users", "list", "--data-dir", d)
    assert r.returncode == 0 and "bob" in r.stdout and "s3cret" not in r.stdout

    r = cli("users", "token", "bob", "--data-dir", d)
    token = r.stdout.strip()
    assert r.returncode == 0 and token.startswith("ppt_")
    assert UserStore(tmp_path).user_for_token(token) == "bob"

    assert cli("users", "remove", "bob", "--data-dir", d).returncode == 0
    r = cli("users", "remove", "bob", "--data-dir", d)
    assert r.returncode == 2 and "no user 'bob'" in r.stderr


def test_first_up_creates_one_user_and_prints_its_password_once(tmp_path, capsys):
    s = load_settings(data_dir=tmp_path)
    before_up(s)
    printed = capsys.readouterr().err
    password = re.search(r"password (\S+)", printed).group(1)
    assert UserStore(tmp_path).verify_password(FIRST_USER, password)
    before_up(s)
    assert capsys.readouterr().err == ""
    assert UserStore(tmp_path).names() == [FIRST_USER]


def test_serve_runs_the_dashboard_until_interrupted(tmp_path):
    port = free_port()
    sink = f"sqlite:///{tmp_path / 'none-yet.db'}"
    proc = subprocess.Popen(
        command_lines.serve(port, sink, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "serve did not start listening in 60 s"
                time.sleep(0.1)  # polling interval while the server starts, not a stand-in for a condition
        assert r.status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/_dash-layout").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "no dashboard users" in err  # it warns that nobody can sign in yet


def test_serve_on_a_busy_port_is_one_line_exit_2(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("serve", "--port", str(port), "--data-dir", str(tmp_path), "--sink", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 2 and "pick another --port" in r.stderr


def test_serve_refuses_bad_workers_and_threads_in_one_line_naming_the_flag(tmp_path):
    sink = f"sqlite:///{tmp_path / 'pulse.db'}"
    r = cli("serve", "--workers", "0", "--sink", sink, "--data-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "--workers / PYPI_PULSE_SERVE_WORKERS" in r.stderr
    r = subprocess.run(
        command_lines.cli("serve", "--sink", sink, "--data-dir", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYPI_PULSE_SERVE_THREADS": "many"},
    )
    assert r.returncode == 2 and "--threads / PYPI_PULSE_SERVE_THREADS" in r.stderr, r.stderr
