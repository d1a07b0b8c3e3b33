"""Sign-in over real HTTP against the real server: what an anonymous client, a signed-in session and an API token
can reach, cookie flags, throttling of failed sign-ins, and how accounts are stored."""

from __future__ import annotations

import json
import os
import stat

import pytest
import requests
from dashboard_testing import PASSWORD, USER, Server, login_form, sign_out, throttle_wait_seconds

from pypi_pulse.dashboard.throttle import SignInThrottle
from pypi_pulse.dashboard.users import UserStore

DASH_CALLBACK = {
    "output": "live-today.children",
    "outputs": {"id": "live-today", "property": "children"},
    "inputs": [],
    "changedPropIds": [],
}


def sign_in(url: str, user: str = USER, password: str = PASSWORD) -> requests.Session:
    s = requests.Session()
    r = s.post(url + "/login", data=login_form(s, url, user, password), allow_redirects=False)
    assert r.status_code == 302, r.text
    return s


def test_anonymous_client_reaches_only_the_sign_in_page_and_assets(server):
    r = requests.get(server.url + "/", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/login?next=/")
    r = requests.get(server.url + "/login")
    assert r.status_code == 200 and 'id="login-form"' in r.text and "WWW-Authenticate" not in r.headers
    for path in ("/_dash-layout", "/_dash-dependencies", "/api/openapi.json", "/api/live/summary"):
        assert requests.get(server.url + path, allow_redirects=False).status_code == 401, path
    assert requests.post(server.url + "/_dash-update-component", json=DASH_CALLBACK).status_code == 401
    assert requests.get(server.url + "/assets/bootstrap.min.css").status_code == 200
    assert requests.get(server.url + "/assets/topojson/world_110m.json").status_code == 200


def test_session_cookie_signed_in_and_signed_out(server):
    s = sign_in(server.url)
    cookie = next(c for c in s.cookies if c.name == "pypi_pulse_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    fresh = requests.Session()
    raw = fresh.post(server.url + "/login", data=login_form(fresh, server.url), allow_redirects=False)
    assert "SameSite=Lax" in raw.headers["Set-Cookie"]
    assert s.get(server.url + "/").status_code == 200
    assert s.get(server.url + "/_dash-layout").status_code == 200
    r = s.post(server.url + "/_dash-update-component", json=DASH_CALLBACK)
    assert r.status_code != 401
    assert sign_out(s, server.url).headers["Location"].endswith("/login")
    assert s.get(server.url + "/_dash-layout").status_code == 401
    assert s.get(server.url + "/", allow_redirects=False).status_code == 302


def test_next_parameter_cannot_redirect_off_site(server):
    s = requests.Session()
    r = s.post(
        server.url + "/login", data=login_form(s, server.url, next_path="https://evil.example/"), allow_redirects=False
    )
    assert r.headers["Location"] == "/"


def test_api_token_for_scripts(server, data_dir):
    token = UserStore(data_dir).new_token(USER)
    ok = requests.get(server.url + "/api/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()
    bad = requests.get(server.url + "/api/openapi.json", headers={"Authorization": "Bearer ppt_not-a-token"})
    assert bad.status_code == 401 and "pypi-pulse users token" in bad.json()["error"]


def test_removed_user_loses_session(server, data_dir):
    store = UserStore(data_dir)
    store.add("temp-user", "temporary password")
    s = sign_in(server.url, "temp-user", "temporary password")
    assert s.get(server.url + "/_dash-layout").status_code == 200
    store.remove("temp-user")
    assert s.get(server.url + "/_dash-layout").status_code == 401


def test_failed_sign_ins_are_slowed_down(filled_sink, data_dir):
    srv = Server(filled_sink, data_dir)
    try:
        s = requests.Session()
        for _ in range(3):
            r = s.post(srv.url + "/login", data=login_form(s, srv.url, password="nope"))
            assert r.status_code == 401 and "Wrong user name or password" in r.text
        # now even the right password is refused from this address until the delay has passed
        r = s.post(srv.url + "/login", data=login_form(s, srv.url), allow_redirects=False)
        assert r.status_code == 429 and "Try again in" in r.text and int(r.headers["Retry-After"]) >= 1
    finally:
        srv.stop()


def test_throttle_doubles_the_delay_and_forgets_after_success(tmp_path):
    now = [1000.0]
    t = SignInThrottle(tmp_path / "signin.db", free_attempts=2, base_delay_s=1.0, max_delay_s=8.0, clock=lambda: now[0])
    t.failed("ip:a")
    assert throttle_wait_seconds(t, "ip:a") == 0
    delays = []
    for _ in range(6):
        t.failed("ip:a")
        delays.append(throttle_wait_seconds(t, "ip:a"))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle_wait_seconds(t, "ip:b") == 0
    now[0] += 8.0
    assert throttle_wait_seconds(t, "ip:a") == 0
    t.succeeded("ip:a")
    t.failed("ip:a")
    assert throttle_wait_seconds(t, "ip:a") == 0


def test_public_api_opens_only_read_only_api(filled_sink, data_dir):
    srv = Server(filled_sink, data_dir, public_api=True)
    try:
        assert requests.get(srv.url + "/api/openapi.json").status_code == 200
        assert requests.post(srv.url + "/api/openapi.json").status_code == 401
        assert requests.get(srv.url + "/_dash-layout").status_code == 401
        assert requests.get(srv.url + "/", allow_redirects=False).status_code == 302
    finally:
        srv.stop()


def test_accounts_file_holds_only_hashes(data_dir):
    store = UserStore(data_dir)
    assert store.verify_password(USER, PASSWORD)
    assert not store.verify_password(USER, PASSWORD + "x")
    assert not store.verify_password("nobody", PASSWORD)
    path = data_dir / "users.json"
    text = path.read_text()
    assert PASSWORD not in text
    assert json.loads(text)["users"][USER]["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir / "session-secret").st_mode) == 0o600


def test_bad_user_names_and_passwords_are_refused(tmp_path):
    from pypi_pulse.errors import UserError

    store = UserStore(tmp_path)
    with pytest.raises(UserError, match="too short"):
        store.add("bob", "short")
    with pytest.raises(UserError, match="invalid user name"):
        store.add("bad name!", "long enough password")
    store.add("bob", "long enough password")
    with pytest.raises(UserError, match="already exists"):
        store.add("bob", "long enough password")
    with pytest.raises(UserError, match="no user"):
        store.remove("carol")
