"""Helpers of the operations tests: where deploy/ is, required binaries, polling with a deadline, a Prometheus
query client. (A uniquely named module: `import conftest` is ambiguous with several conftest.py files.)"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if path is None:
        pytest.fail(
            f"{binary} is not installed: run .ci/run (it installs Debian's prometheus), or apt-get install prometheus"
        )
    return path


def poll(check: Callable[[], Optional[str]], timeout: float, what: str, every: float = 0.25):
    """Call `check` until it returns None (done); fail with its last complaint after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
        except (requests.RequestException, KeyError, IndexError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if last is None:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}: {last}")
        time.sleep(every)


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url = url
        self.proc = proc
        self.log = log

    def query(self, expr: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        body = r.json()
        if body.get("status") != "success":
            raise ValueError(f"query {expr!r} failed: {body.get('error')}")
        return body["data"]["result"]

    def values(self, expr: str, by: str = "") -> dict:
        """The instant vector of `expr` as {label value of `by` (or ''): float}."""
        return {s["metric"].get(by, "") if by else "": float(s["value"][1]) for s in self.query(expr)}

    def names(self) -> set[str]:
        return set(requests.get(f"{self.url}/api/v1/label/__name__/values", timeout=5).json()["data"])
