"""`pypi-pulse serve` with two gunicorn worker processes on one port: what one worker learns (a sign-in, a
sign-out, a password check in flight) holds in the other. Each response names the worker process that answered
(`X-Pulse-Worker`, sent only when the test sets PULSE_TEST_WORKER_HEADER), so the tests see both answer."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))

from dashboard_testing import throttle_claims  # noqa: E402
from web_faults_testing import USER, Serve, from_address, login_form, prepare_data_dir  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402
from pypi_pulse.dashboard.probes import WORKER_HEADER_ENV  # noqa: E402
from pypi_pulse.dashboard.throttle import IN_FLIGHT_RETRY_S, SignInThrottle  # noqa: E402

WORKERS = 2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("workers")
    s = Serve(d, prepare_data_dir(d), env={WORKER_HEADER_ENV: "1"}, args=("--workers", str(WORKERS), "--threads", "4"))
    yield s
    s.stop()


def answers_from_every_worker(url: str, cookies: dict, deadline_s: float = 30.0) -> dict[str, set[int]]:
    """GET `url` with `cookies`, each request on a new connection and several at once, until both worker
    processes have answered; returns {worker pid: status codes it answered with}."""
    seen: dict[str, set[int]] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + deadline_s

    def one():
        r = requests.get(url, cookies=cookies, headers={"Connection": "close"}, allow_redirects=False, timeout=10)
        with lock:
            seen.setdefault(r.headers["X-Pulse-Worker"], set()).add(r.status_code)

    while len(seen) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered"
        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    return seen


def test_a_session_signed_in_on_one_worker_holds_on_every_worker_and_sign_out_ends_it_on_all(served):
    http = requests.Session()
    r = http.post(served.url + "/login", data=login_form(http, served.url), allow_redirects=False)
    assert r.status_code == 302
    signed_in_by = r.headers["X-Pulse-Worker"]
    cookies = http.cookies.get_dict()

    answered = answers_from_every_worker(served.url + "/api/openapi.json", cookies)
    assert signed_in_by in answered and all(codes == {200} for codes in answered.values()), answered

    token = login_form(http, served.url)["csrf_token"]
    r = http.post(served.url + "/logout", data={"csrf_token": token}, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    answered = answers_from_every_worker(served.url + "/api/openapi.json", cookies)
    assert all(codes == {401} for codes in answered.values()), answered


def test_concurrent_wrong_sign_ins_run_one_password_check_at_a_time_across_workers(served):
    """Bursts of wrong passwords for one user, each from addresses that have not failed yet (so none is held back
    by an earlier failure): both workers take some, yet the password checks of all processes never overlap in
    time (one in flight per user name, claimed in signin.db)."""
    before = len(served.events("password checked"))
    codes: list[int] = []
    lock = threading.Lock()
    fresh = iter(f"127.0.{i}.{j}" for i in range(1, 4) for j in range(2, 250))
    deadline = time.monotonic() + 60

    def guess(source: str, start: threading.Barrier):
        http = from_address(source)
        form = login_form(http, served.url, password="wrong password")
        start.wait()
        r = http.post(served.url + "/login", data=form, allow_redirects=False, timeout=60)
        with lock:
            codes.append(r.status_code)

    while True:
        checks = served.events("password checked")[before:]
        if len({c["pid"] for c in checks}) >= WORKERS:
            break
        assert time.monotonic() < deadline, f"password checks only in { ({c['pid'] for c in checks}) }"
        addresses = [next(fresh) for _ in range(3)]
        start = threading.Barrier(len(addresses) * 5)
        threads = [threading.Thread(target=guess, args=(a, start)) for a in addresses for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)

    assert codes and set(codes) <= {401, 429}, sorted(set(codes))
    assert len(checks) == codes.count(401)  # each 401 cost one check; a refused attempt (429) none
    spans = sorted((c["started"], c["started"] + c["seconds"], c["pid"]) for c in checks)
    for (_, end, pid), (start_next, _, pid_next) in zip(spans, spans[1:]):
        assert start_next >= end, f"checks overlapped: worker {pid} until {end}, worker {pid_next} from {start_next}"


def test_a_claim_left_by_a_killed_worker_lapses_after_signin_claim_seconds(tmp_path):
    now = [1000.0]
    path = tmp_path / "signin.db"
    crashed = SignInThrottle(path, claim_s=30.0, clock=lambda: now[0])
    other = SignInThrottle(path, claim_s=30.0, clock=lambda: now[0])  # another process: its own connection
    assert crashed.begin("10.0.0.1", USER) == 0.0  # then the process dies: no end()
    assert other.begin("10.0.0.2", USER) == IN_FLIGHT_RETRY_S  # same user name, from anywhere
    assert other.begin("10.0.0.1", "someone-else") == IN_FLIGHT_RETRY_S  # same address, any user
    now[0] += 30.5
    assert other.begin("10.0.0.2", USER) == 0.0
    other.end("10.0.0.2", USER, ok=True)
    assert throttle_claims(other) == 0


def test_the_wsgi_entry_point_under_gunicorns_own_command_shares_one_secret_and_sessions(tmp_path):
    """`gunicorn pypi_pulse.dashboard.wsgi:app`, settings from PYPI_PULSE_* only, on a data directory with no session
    secret yet: the workers, starting together, agree on one secret, so a sign-in holds on every worker."""
    import os
    import subprocess

    from pypi_pulse.broker import free_port

    sink_url = prepare_data_dir(tmp_path)
    port = free_port()
    env = {**os.environ, "PYPI_PULSE_SINK": sink_url, "PYPI_PULSE_DATA_DIR": str(tmp_path), WORKER_HEADER_ENV: "1"}
    log = tmp_path / "gunicorn.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(WORKERS),
            "--threads",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "pypi_pulse.dashboard.wsgi:app",
        ],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(base + "/readyz", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # workers still importing: queued, or refused
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        http = requests.Session()
        assert http.post(base + "/login", data=login_form(http, base), allow_redirects=False).status_code == 302
        answered = answers_from_every_worker(base + "/api/openapi.json", http.cookies.get_dict())
        assert all(codes == {200} for codes in answered.values()), answered
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert not list(tmp_path.glob(".session-secret.*"))  # no half-written key left behind


@pytest.mark.postgres
def test_postgresql_reads_reuse_a_bounded_pool_of_connections_per_worker(tmp_path, pg_url):
    """Hundreds of concurrent API requests on two workers: the server's connections to PostgreSQL (seen by the
    operating system, per process) stay within workers x sink_read_connections, and are reused, not opened per
    request."""
    import psutil
    from dashboard_testing import PASSWORD, fill

    from pypi_pulse.dashboard.users import UserStore

    history = tmp_path / "history"
    fill(pg_url, history)
    UserStore(tmp_path).add(USER, PASSWORD)
    pg_port = int(pg_url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    s = Serve(tmp_path, pg_url, args=("--workers", str(WORKERS), "--threads", "4", "--history", str(history)))
    try:
        http = requests.Session()
        assert http.post(s.url + "/login", data=login_form(http, s.url), allow_redirects=False).status_code == 302
        cookies = http.cookies.get_dict()
        tree = psutil.Process(s.proc.pid)
        seen: set[tuple[int, int]] = set()  # (pid, local port) of every connection to PostgreSQL observed
        most = 0
        codes: list[int] = []
        done = threading.Event()

        def sample():
            nonlocal most
            while not done.is_set():
                now = set()
                for p in (tree, *tree.children(recursive=True)):
                    try:
                        now |= {
                            (p.pid, c.laddr.port)
                            for c in p.net_connections("tcp")
                            if c.raddr and c.raddr.port == pg_port
                        }
                    except psutil.NoSuchProcess:
                        pass
                seen.update(now)
                most = max(most, len(now))
                time.sleep(0.02)

        def call(path: str):
            r = requests.get(s.url + path, cookies=cookies, timeout=30)
            codes.append(r.status_code)

        sampler = threading.Thread(target=sample)
        sampler.start()
        paths = ["/api/live/summary", "/api/packages/numpy/overall", "/api/countries", "/api/live/windows?last=60"]
        for _ in range(5):
            threads = [threading.Thread(target=call, args=(p,)) for p in paths * 10]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        done.set()
        sampler.join()
        assert codes.count(200) == len(codes) == 200, sorted(set(codes))
        limit = WORKERS * 4  # sink_read_connections' default per worker
        assert 1 <= most <= limit and len(seen) <= limit, (most, len(seen))
    finally:
        s.stop()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_serve_and_every_worker_within_seconds(tmp_path, how):
    """Ctrl-C in a terminal signals the whole foreground process group (gunicorn's parent and its workers); a
    service manager sends SIGTERM to the main process only. Either way nothing is left after a few seconds."""
    import os
    import signal
    import subprocess

    import psutil

    from pypi_pulse.broker import free_port

    sink_url = prepare_data_dir(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        command_lines.serve(port, sink_url, tmp_path, "--workers", str(WORKERS)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(proc.pid).children()) < WORKERS or not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        t0 = time.monotonic()
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.terminate()
        assert proc.wait(10) == 0
        gone, alive = psutil.wait_procs(family, timeout=max(0.1, 5 - (time.monotonic() - t0)))
        assert not alive, alive
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
