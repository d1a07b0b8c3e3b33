"""The real `pypi-pulse serve` as a subprocess on a free port, over a SQLite sink filled with the dashboard tests'
known data, with one user; its structured (JSON) log kept in a file the tests read. Also: requests sessions that
sign in through the form (with its CSRF token) and that connect from another loopback address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))

from dashboard_testing import PASSWORD, USER, fill, login_form  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402
from pypi_pulse.broker import free_port  # noqa: E402
from pypi_pulse.dashboard.users import UserStore  # noqa: E402

__all__ = ["PASSWORD", "USER", "Serve", "from_address", "login_form", "prepare_data_dir"]


def prepare_data_dir(path: Path) -> str:
    """A data dir with the user and the known data; returns the sink URL."""
    UserStore(path).add(USER, PASSWORD)
    url = f"sqlite:///{path / 'pulse.db'}"
    fill(url)
    return url


class Serve:
    """`pypi-pulse serve` on 127.0.0.1:<free port>, logging JSON at info level to `log_path`."""

    def __init__(self, data_dir: Path, sink_url: str, env: dict | None = None, args: tuple = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"serve-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            command_lines.serve(self.port, sink_url, data_dir, "--host", "127.0.0.1", "--log-level", "info", *args),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYPI_PULSE_LOG_FORMAT": "json", **(env or {})},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/login", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"serve did not come up:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict]:
        """The JSON log records whose event is `name`."""
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == name:
                    out.append(rec)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class _SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def from_address(source: str) -> requests.Session:
    """A session whose connections come from `source` (a loopback address such as 127.0.0.2)."""
    http = requests.Session()
    adapter = _SourceAddressAdapter(source)
    http.mount("http://", adapter)
    return http
