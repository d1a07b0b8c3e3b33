"""Requests per second and latency of `pypi-pulse serve` on gunicorn with 1 and 2 workers, and on waitress.

    python3 benchmarks/serve_workers.py [--seconds 8] [--clients 16]

Fills an SQLite sink with the dashboard tests' known data, starts the real `serve` for each server shape, signs in,
and has `--clients` threads (each its own keep-alive connection) call two API endpoints for `--seconds` each. The
clients run on the same machine and take CPU from the server: on a 2-core machine the figures understate what more
workers buy on a server of their own.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dashboard"))

from dashboard_testing import PASSWORD, USER, fill  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402
from pypi_pulse.broker import free_port  # noqa: E402
from pypi_pulse.dashboard.users import UserStore  # noqa: E402

SHAPES = {"gunicorn, 1 worker": ("gunicorn", 1), "gunicorn, 2 workers": ("gunicorn", 2), "waitress": ("waitress", 1)}
PATHS = ("/api/live/summary", "/api/packages/numpy/overall")


def signed_in_cookies(base: str) -> dict:
    http = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', http.get(base + "/login").text).group(1)
    form = {"username": USER, "password": PASSWORD, "next": "/", "csrf_token": token}
    assert http.post(base + "/login", data=form, allow_redirects=False).status_code == 302
    return http.cookies.get_dict()


def load(base: str, path: str, cookies: dict, clients: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, median ms, p95 ms) of `clients` threads calling `path` for `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client():
        http = requests.Session()
        http.cookies.update(cookies)
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = http.get(base + path)
            took = time.perf_counter() - t0
            assert r.status_code == 200, r.status_code
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return len(latencies) / seconds, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.95)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        UserStore(data).add(USER, PASSWORD)
        sink = f"sqlite:///{data / 'pulse.db'}"
        fill(sink)
        for name, (server, workers) in SHAPES.items():
            port = free_port()
            env = {**os.environ, "PYPI_PULSE_SERVE_SERVER": server}
            proc = subprocess.Popen(
                command_lines.serve(port, sink, data, "--workers", str(workers)),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if requests.get(base + "/readyz", timeout=10).status_code == 200:
                            break
                    except (requests.ConnectionError, requests.Timeout):
                        pass
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"{name}: serve did not come up")
                    time.sleep(0.1)
                cookies = signed_in_cookies(base)
                for path in PATHS:
                    rate, median, p95 = load(base, path, cookies, args.clients, args.seconds)
                    print(f"{name:20} {path:30} {rate:6.0f} req/s  median {median:5.1f} ms  p95 {p95:5.1f} ms")
            finally:
                proc.terminate()
                proc.wait(15)


if __name__ == "__main__":
    main()
