"""A sink filled with known windows and rollups (through the real Sink write API), the real dashboard server on a
free port in a thread, a signed-up user, and a real headless Chromium."""

from __future__ import annotations

import datetime as dt
import re
import threading
from pathlib import Path
from typing import Optional

import pytest

from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket, WindowRow

NEWEST = int(dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC).timestamp())
N_WINDOWS = 900
FIRST_DAY = dt.date(2026, 10, 1)
N_DAYS = 45
PACKAGES = {"numpy": 1000, "requests": 700, "torch": 300, "flask": 120, "matplotlib": 90}
COUNTRY_SPLIT = {"US": 0.6, "DE": 0.2, "FR": 0.1, "JP": 0.1}
USER, PASSWORD = "alice", "correct horse battery"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def window(i: int) -> WindowRow:
    """The i-th window before NEWEST (i=0 is the newest): small, varying, exactly known numbers."""
    start = NEWEST - i
    us, de, fr = 20 + i % 7, 5 + i % 3, 1 + i % 2
    countries = {"US": us, "DE": de, "FR": fr}
    if i % 5 == 0:
        countries["ZZ"] = 1
    total = sum(countries.values())
    top = [("numpy", total // 2), ("requests", total // 4), ("torch", total - total // 2 - total // 4)]
    return WindowRow(start, total, 3, countries, top)


def daily_count(project: str, day_index: int) -> int:
    return PACKAGES[project] + 10 * day_index + (day_index % 3)


def day(i: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=i)).isoformat()


def rollup_counts(i: int) -> dict:
    counts = {}
    d = day(i)
    for p in PACKAGES:
        n = daily_count(p, i)
        counts[(d, p, "overall", None)] = n
        counts[(d, p, "with_mirrors", None)] = n + 5
        left = n
        for cc, share in COUNTRY_SPLIT.items():
            k = int(n * share) if cc != "JP" else left
            counts[(d, p, "country", cc)] = k
            left -= k
        counts[(d, p, "python_minor", "3.12")] = n * 2 // 3
        counts[(d, p, "python_minor", "3.11")] = n - n * 2 // 3
        counts[(d, p, "python_major", "3")] = n
        counts[(d, p, "system", "Linux")] = n * 3 // 4
        counts[(d, p, "system", "Windows")] = n - n * 3 // 4
        counts[(d, p, "installer", "pip")] = n * 4 // 5
        counts[(d, p, "installer", "uv")] = n - n * 4 // 5
        counts[(d, p, "ci", "true")] = n // 4 + i % 5
        counts[(d, p, "ci", None)] = n - (n // 4 + i % 5)
    return counts


def day_blocks(i: int) -> list[tuple[int, int]]:
    """Day i's all-project downloads per 10-minute block (block end, downloads): busiest in the afternoon UTC."""
    start = int(dt.datetime.fromisoformat(day(i)).replace(tzinfo=dt.UTC).timestamp())
    return [(start + 600 * (k + 1), 20 + 2 * min(k // 6, 23 - k // 6) + i % 3) for k in range(144)]


def fill(url: str, history: Optional[Path] = None) -> None:
    """The known windows, rollups and day profiles into the sink at `url` and its history (default: beside a SQLite
    sink; a PostgreSQL sink's test passes its own)."""
    from pypi_pulse.sink.recent import record_day_profile

    with open_sink(url, history=history) as db:
        db.write_buckets(
            [
                RollupBucket(
                    int(dt.datetime.fromisoformat(day(i)).replace(tzinfo=dt.UTC).timestamp()), rollup_counts(i)
                )
                for i in range(N_DAYS)
            ]
        )
        db.write([window(i) for i in range(N_WINDOWS)], None)
        for i in range(N_DAYS):
            record_day_profile(db, day_blocks(i))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dash-data")
    from pypi_pulse.dashboard.users import UserStore

    UserStore(d).add(USER, PASSWORD)
    return d


@pytest.fixture(scope="module")
def filled_sink(data_dir) -> str:
    url = f"sqlite:///{data_dir / 'pulse.db'}"
    fill(url)
    return url


class Server:
    """The real dashboard app on werkzeug's threaded server (what `pypi-pulse serve` runs)."""

    def __init__(self, sink_url: str, data_dir: Path, **kwargs):
        from werkzeug.serving import make_server

        from pypi_pulse.config import Settings
        from pypi_pulse.dashboard.app import create_app

        self.app = create_app(Settings(sink=sink_url, data_dir=data_dir, **kwargs))
        self.httpd = make_server("127.0.0.1", 0, self.app.server, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(filled_sink, data_dir):
    s = Server(filled_sink, data_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from dash.testing.browser import Browser
    from selenium.webdriver.remote.remote_connection import RemoteConnection

    # selenium 3 passes socket's default-timeout sentinel to urllib3, which urllib3 2 rejects: give a real timeout
    RemoteConnection.set_timeout(60)
    with Browser("chrome", headless=True, percy_run=False, wait_timeout=20) as b:
        b.driver.set_window_size(1440, 1500)
        yield b


def login_form(http, base: str, user: str = USER, password: str = PASSWORD, next_path: str = "/") -> dict:
    """The sign-in form's fields as a browser posts them, with the CSRF token the sign-in page gave `http`."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', http.get(base + "/login").text)
    return {"username": user, "password": password, "next": next_path, "csrf_token": found.group(1) if found else ""}


def signed_in(base: str, user: str = USER, password: str = PASSWORD):
    """A requests session signed in through the form, as a browser would be."""
    import requests

    http = requests.Session()
    r = http.post(base + "/login", data=login_form(http, base, user, password), allow_redirects=False)
    assert r.status_code == 302, r.text[:500]
    return http


def sign_out(http, base: str):
    """Sign out as the dashboard's button does: POST /logout with the session's CSRF token."""
    page = http.get(base + "/logout")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return http.post(base + "/logout", data={"csrf_token": token}, allow_redirects=False)


def fire_callback(http, base: str, output_contains: str, values: dict) -> dict:
    """POST a Dash callback exactly as the page does (built from /_dash-dependencies); returns the response JSON."""
    deps = http.get(base + "/_dash-dependencies").json()
    dep = next(d for d in deps if output_contains in d["output"])

    def props(items):
        return [
            {"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")} for i in items
        ]

    outs = dep["output"].strip(".").split("...")
    outputs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in outs]
    body = {
        "output": dep["output"],
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": props(dep["inputs"]),
        "state": props(dep["state"]),
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in dep["inputs"][:1]],
    }
    r = http.post(base + "/_dash-update-component", json=body)
    assert r.status_code == 200, r.text[:500]
    return r.json()["response"]


# ---- the sign-in throttle's shared records, read as the tests' truth -------------------------------------------
def throttle_claims(t) -> int:
    """Sign-in claims live now in a SignInThrottle's database, across every process."""
    return t._db().execute("SELECT count(*) FROM claims WHERE expires >= ?", (t.clock(),)).fetchone()[0]


def throttle_wait_seconds(t, *keys: str) -> float:
    """How long an attempt for these keys must still wait before it is considered (0: go ahead)."""
    marks = ", ".join("?" for _ in keys)
    rows = t._db().execute(f"SELECT blocked_until FROM records WHERE key IN ({marks})", keys).fetchall()
    now = t.clock()
    return max([0.0, *(b - now for (b,) in rows)])
