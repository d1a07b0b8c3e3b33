"""Sign-in for the whole server: a form (never a basic-auth pop-up), a signed session cookie, sign-out.

The cookie carries a session id that must be live in the server-side session store (dashboard/sessions.py), so
signing out ends the session even for a copy of the cookie. The sign-in and sign-out forms carry a CSRF token kept
in the session, so another site cannot post them. Password checks go through the sign-in throttle (one in flight
per address and per user name) and a bounded pool of argon2 checks (dashboard/password_checks.py).

One `before_request` guard covers everything the Flask app serves — dashboard pages, Dash's layout, dependency and
callback endpoints, and the JSON API — so a route added later is protected by default. Only the sign-in page and
static assets (CSS, the Dash component bundles) are reachable anonymously; scripts authenticate with an API token
(`Authorization: Bearer ppt_...`), and `--public-api` opens the read-only API (GET /api/...) to everyone.
"""

from __future__ import annotations

import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import structlog
from flask import Flask, g, jsonify, redirect, render_template_string, request, session

from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.dashboard.password_checks import Busy, PasswordChecks
from pypi_pulse.dashboard.sessions import SessionStore
from pypi_pulse.dashboard.throttle import THROTTLE_FILE, SignInThrottle
from pypi_pulse.dashboard.users import UserStore
from pypi_pulse.errors import UserError

log = structlog.get_logger("pypi_pulse.dashboard.auth")

SECRET_FILE = "session-secret"
ANONYMOUS_PREFIXES = ("/assets/", "/_dash-component-suites/")
ANONYMOUS_PATHS = frozenset({"/login", "/logout", "/_favicon.ico", "/favicon.ico", "/healthz", "/readyz"})
SESSION_LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"

_LOGIN_PAGE = """<!doctype html>
<html lang="en" data-bs-theme="light"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · pypi-pulse</title><link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body class="bg-body-tertiary">
<main class="container" style="max-width: 24rem; margin-top: 12vh">
  <h1 class="h3 mb-1">pypi-pulse</h1>
  <p class="text-body-secondary mb-4">Live PyPI downloads. Sign in to continue.</p>
  {% if message %}<div id="login-error" class="alert alert-{{ level }}" role="alert">{{ message }}</div>{% endif %}
  <form method="post" action="/login" id="login-form">
    <input type="hidden" name="next" value="{{ next }}">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <div class="mb-3"><label class="form-label" for="username">User name</label>
      <input class="form-control" id="username" name="username" autocomplete="username" required autofocus
             value="{{ username }}"></div>
    <div class="mb-3"><label class="form-label" for="password">Password</label>
      <input class="form-control" id="password" name="password" type="password" autocomplete="current-password" required></div>
    <button class="btn btn-primary w-100" id="login-submit" type="submit">Sign in</button>
  </form>
  <p class="small text-body-secondary mt-4">No account? An administrator adds one with
    <code>pypi-pulse users add NAME --password-stdin</code>.</p>
</main></body></html>"""


_LOGOUT_PAGE = """<!doctype html>
<html lang="en" data-bs-theme="light"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign out · pypi-pulse</title><link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body class="bg-body-tertiary"><main class="container" style="max-width: 24rem; margin-top: 12vh">
  <form method="post" action="/logout" id="logout-form">
    <input type="hidden" name="csrf_token" value="{{ csrf }}">
    <button class="btn btn-primary w-100" id="logout-submit" type="submit">Sign out of pypi-pulse</button>
  </form>
  <p class="mt-3"><a href="/">Back to the dashboard</a></p>
</main></body></html>"""


def load_or_create_secret(data_dir: Path) -> bytes:
    """The session-signing key: generated once, kept in the data dir so sessions survive restarts."""
    path = Path(data_dir) / SECRET_FILE
    try:
        if path.exists():
            key = path.read_bytes().strip()
            if len(key) >= 32:
                return key
            path.unlink()  # too short to be one of ours: replaced
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole under another name, then linked into place only if no other process did first: server
        # workers started together all end up with the one key, whichever wrote it
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_bytes().strip()
    except OSError as exc:
        raise UserError(f"cannot read or create {path} ({exc}): check --data-dir permissions") from None


def _safe_next(target: str) -> str:
    """Only same-site paths, so the sign-in form cannot be used to redirect a user elsewhere."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not (parts.path or "/").startswith("/") or target.startswith("//"):
        return "/"
    return target


def _client() -> str:
    return request.remote_addr or "unknown"


def csrf_token() -> str:
    """This browser session's CSRF token (made on first use), for the sign-in and sign-out forms."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    sent, kept = request.form.get(CSRF_FIELD, ""), session.get("csrf")
    return isinstance(kept, str) and len(kept) >= 32 and hmac.compare_digest(sent.encode(), kept.encode())


def install_auth(
    server: Flask,
    store: UserStore,
    data_dir: Path,
    *,
    public_api: bool = False,
    secure_cookies: bool = False,
    throttle: SignInThrottle | None = None,
    limits: WebLimits | None = None,
) -> SignInThrottle:
    limits = limits or WebLimits.defaults()
    throttle = throttle or SignInThrottle(Path(data_dir) / THROTTLE_FILE, claim_s=limits.signin_claim_seconds)
    checks = PasswordChecks(store.verify_password, limits.signin_checks, limits.signin_wait_seconds)
    sessions = SessionStore(data_dir, SESSION_LIFETIME.total_seconds())
    server.config["PYPI_PULSE_PASSWORD_CHECKS"] = checks
    server.secret_key = load_or_create_secret(data_dir)
    server.config.update(
        SESSION_COOKIE_NAME="pypi_pulse_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )

    def page(
        message: str = "",
        level: str = "danger",
        status: int = 200,
        username: str = "",
        nxt: str = "/",
        retry_after: float = 0.0,
    ):
        html = render_template_string(
            _LOGIN_PAGE, message=message, level=level, username=username, next=nxt, csrf=csrf_token()
        )
        headers = {"Cache-Control": "no-store"}
        if retry_after > 0:
            headers["Retry-After"] = str(int(retry_after) + 1)
        return html, status, headers

    @server.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            return page(nxt=_safe_next(request.args.get("next", "/")))
        name = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        nxt = _safe_next(request.form.get("next", "/"))
        if not _csrf_ok():
            log.warning("sign-in without a valid CSRF token", client=_client())
            return page(
                "The sign-in form expired or did not come from this site: sign in again.",
                status=400,
                username=name,
                nxt=nxt,
            )
        wait = throttle.begin(_client(), name)
        if wait > 0:
            log.warning("sign-in throttled", user=name, client=_client(), wait_s=round(wait, 1))
            return page(
                f"Too many sign-in attempts. Try again in {int(wait) + 1} s.",
                status=429,
                username=name,
                nxt=nxt,
                retry_after=wait,
            )
        ok = None
        try:
            ok = checks.check(name, password, _client())
        except Busy as exc:
            log.warning("sign-in refused: server busy", user=name, client=_client(), reason=str(exc))
            return page(
                "The server is busy checking other sign-ins. Try again in a few seconds.",
                status=503,
                username=name,
                nxt=nxt,
                retry_after=checks.wait_s,
            )
        finally:
            throttle.end(_client(), name, ok)
        if not ok:
            log.warning("sign-in failed", user=name, client=_client())
            return page("Wrong user name or password.", status=401, username=name, nxt=nxt)
        sessions.revoke(session.get("sid"))
        session.clear()
        session["user"] = name
        session["sid"] = sessions.create(name)
        session.permanent = True
        csrf_token()
        log.info("signed in", user=name, client=_client())
        return redirect(nxt)

    @server.route("/logout", methods=["GET", "POST"])
    def logout():
        if request.method == "GET":  # a link or an image must not sign anyone out: only the form with the token
            if session.get("user"):
                return render_template_string(_LOGOUT_PAGE, csrf=csrf_token()), 200, {"Cache-Control": "no-store"}
            return redirect("/login")
        if not _csrf_ok():
            return redirect("/")
        sessions.revoke(session.get("sid"))
        log.info("signed out", user=session.get("user"), client=_client())
        session.clear()
        return redirect("/login")

    @server.before_request
    def require_sign_in():
        path = request.path
        if path in ANONYMOUS_PATHS or path.startswith(ANONYMOUS_PREFIXES):
            return None
        user = session.get("user")
        if user and sessions.user_of(session.get("sid")) == user and store.exists(user):
            g.user = user
            return None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            user = store.user_for_token(auth[7:].strip())
            if user:
                g.user = user
                return None
            return jsonify(error="invalid API token: create one with `pypi-pulse users token NAME`"), 401
        if public_api and path.startswith("/api/") and request.method in ("GET", "HEAD"):
            return None
        if request.method == "GET" and not path.startswith(("/_dash-", "/api/")):
            return redirect(f"/login?next={quote(path)}")
        return jsonify(error="sign in first (POST /login) or send Authorization: Bearer <token>"), 401

    return throttle
