"""Sign-in abuse against the real `pypi-pulse serve`: a burst of concurrent wrong passwords costs one argon2 check
at a time and bounded memory, cannot lock the real user out from another address, sign-out ends the session on
the server, and the sign-in form needs its CSRF token."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
import requests
from web_faults_testing import PASSWORD, USER, Serve, from_address, login_form, prepare_data_dir

BURST = 200
RSS_LIMIT = 500 * 2**20


@pytest.fixture()
def serve(tmp_path):
    s = Serve(tmp_path, prepare_data_dir(tmp_path))
    yield s
    s.stop()


class RssSampler(threading.Thread):
    """The server's resident memory, its worker processes included, sampled every 10 ms until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = self.rss()
        self.samples = 0
        self.done = threading.Event()

    def rss(self) -> int:
        total = 0
        for p in (self.proc, *self.proc.children(recursive=True)):
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def run(self):
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.rss())
            self.samples += 1


def test_concurrent_wrong_sign_ins_run_one_check_at_a_time_and_never_lock_the_real_user_out(serve):
    attacker = requests.Session()
    form = login_form(attacker, serve.url, password="wrong password")
    cookies = attacker.cookies.get_dict()
    start = threading.Barrier(BURST)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def guess():
        http = requests.Session()
        http.cookies.update(cookies)
        start.wait()
        r = http.post(serve.url + "/login", data=form, allow_redirects=False, timeout=60)
        with lock:
            answers.append(r)

    sampler = RssSampler(serve.proc.pid)
    sampler.start()
    threads = [threading.Thread(target=guess) for _ in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    sampler.done.set()
    sampler.join()

    codes = [r.status_code for r in answers]
    assert len(codes) == BURST and set(codes) <= {401, 429}, sorted(set(codes))
    refused = [r for r in answers if r.status_code == 429]
    assert refused and all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    checks = serve.events("password checked")
    # every wrong password that was answered 401 was checked, and no other: the 429s cost no hashing
    assert len(checks) == codes.count(401) >= 1
    assert max(c["running"] for c in checks) == 1
    assert sampler.samples > 10 and sampler.peak < RSS_LIMIT, f"peak RSS {sampler.peak / 2**20:.0f} MiB"

    # keep guessing, one at a time, until this address is held back
    for _ in range(10):
        r = attacker.post(serve.url + "/login", data=form, allow_redirects=False)
        if r.status_code == 429:
            break
    assert r.status_code == 429
    right = login_form(attacker, serve.url)
    assert attacker.post(serve.url + "/login", data=right, allow_redirects=False).status_code == 429

    # the real user, from another address, is let in at once
    owner = from_address("127.0.0.2")
    t0 = time.monotonic()
    r = owner.post(serve.url + "/login", data=login_form(owner, serve.url), allow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    assert time.monotonic() - t0 < 5
    assert owner.get(serve.url + "/_dash-layout").status_code == 200
    assert serve.events("signed in")[-1]["client"] == "127.0.0.2"


def test_sign_out_revokes_the_session_even_for_a_copied_cookie(serve):
    http = requests.Session()
    assert http.post(serve.url + "/login", data=login_form(http, serve.url), allow_redirects=False).status_code == 302
    stolen = http.cookies.get_dict()
    assert requests.get(serve.url + "/_dash-layout", cookies=stolen).status_code == 200

    # a plain GET (a link, an image on another site) does not sign out
    page = http.get(serve.url + "/logout")
    assert page.status_code == 200 and 'id="logout-form"' in page.text
    assert requests.get(serve.url + "/_dash-layout", cookies=stolen).status_code == 200
    # a POST without the token does not either
    assert http.post(serve.url + "/logout", data={}, allow_redirects=False).status_code == 302
    assert requests.get(serve.url + "/_dash-layout", cookies=stolen).status_code == 200

    token = login_form(http, serve.url)["csrf_token"]
    r = http.post(serve.url + "/logout", data={"csrf_token": token}, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    # the old cookie, replayed, is signed out everywhere
    assert requests.get(serve.url + "/_dash-layout", cookies=stolen).status_code == 401
    r = requests.get(serve.url + "/", cookies=stolen, allow_redirects=False)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert requests.get(serve.url + "/api/live/summary", cookies=stolen).status_code == 401


def test_sign_in_without_the_forms_csrf_token_is_refused_before_any_password_check(serve):
    bare = requests.post(serve.url + "/login", data={"username": USER, "password": PASSWORD}, allow_redirects=False)
    assert bare.status_code == 400 and "sign in again" in bare.text

    # a token from another browser's session does not fit this one
    other = requests.Session()
    foreign = login_form(other, serve.url)["csrf_token"]
    http = requests.Session()
    http.get(serve.url + "/login")
    r = http.post(
        serve.url + "/login",
        data={"username": USER, "password": PASSWORD, "csrf_token": foreign},
        allow_redirects=False,
    )
    assert r.status_code == 400
    assert http.get(serve.url + "/_dash-layout").status_code == 401
    assert serve.events("password checked") == []

    r = http.post(serve.url + "/login", data=login_form(http, serve.url), allow_redirects=False)
    assert r.status_code == 302 and http.get(serve.url + "/_dash-layout").status_code == 200
