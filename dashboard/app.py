"""The dashboard server: one Flask app (Dash's) serving the tabs, the JSON API and the sign-in pages.

Bootstrap's CSS is served from assets/ (no CDN: the dashboard must work on a machine without internet access).
Tab contents are rendered when a tab is opened, so that charts are sized for a visible container and the Live
tab's one-second timer only runs while it is shown.
"""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import structlog
from dash import Input, Output, dcc, html
from flask import g

from pypi_pulse.config import Settings
from pypi_pulse.dashboard import categories_tab, countries_tab, daily_tab, freshness, live, trending_tab, trends_tab
from pypi_pulse.dashboard.auth import CSRF_FIELD, csrf_token, install_auth
from pypi_pulse.dashboard.context import DashContext
from pypi_pulse.dashboard.hardening import install_hardening
from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.dashboard.probes import install_probes
from pypi_pulse.dashboard.users import UserStore
from pypi_pulse.sink.read_pool import ReadPool

log = structlog.get_logger("pypi_pulse.dashboard")

TABS = {
    "live": "Live",
    "countries": "Countries",
    "daily": "Daily pattern",
    "trends": "Package trends",
    "categories": "Categories",
    "trending": "Trending",
}


def _layout() -> html.Div:
    user = getattr(g, "user", None) or ""
    navbar = dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("pypi-pulse", className="fw-bold text-body"),
                html.Div(id="live-status", className="me-auto ms-2"),
                dbc.Switch(id="theme-dark", label="Dark", value=False, persistence=True, className="mb-0 me-3"),
                html.Span(user, id="signed-in-user", className="text-body-secondary me-3 small"),
                html.Form(
                    [
                        dcc.Input(type="hidden", name=CSRF_FIELD, value=csrf_token(), id="logout-csrf"),
                        html.Button(
                            "Sign out", id="logout", type="submit", className="btn btn-outline-secondary btn-sm"
                        ),
                    ],
                    method="POST",
                    action="/logout",
                    className="mb-0",
                ),
            ],
            fluid=True,
        ),
        className="border-bottom mb-3 bg-body-tertiary",
    )
    return html.Div(
        [
            dcc.Store(id="theme", data="light"),
            navbar,
            dbc.Container(
                [
                    dbc.Tabs(
                        [dbc.Tab(label=v, tab_id=k, id=f"tab-{k}") for k, v in TABS.items()],
                        id="tabs",
                        active_tab="live",
                        className="mb-3",
                    ),
                    html.Div(id="tab-content"),
                ],
                fluid=True,
                style={"maxWidth": "1600px"},
            ),
        ]
    )


def create_app(settings: Settings) -> dash.Dash:
    """The whole server for these settings; each server worker process calls it once, after the fork, so that its
    sink connections and threads are its own."""
    limits = WebLimits.from_settings(settings)
    freshness.configure(settings.live_delayed_after_seconds)
    sink_url, data_dir = settings.sink_url, settings.data_dir
    pool = ReadPool(
        sink_url,
        history=settings.history_path,
        max_size=settings.sink_read_connections,
        wait_s=settings.sink_read_wait_seconds,
        check_timeout_s=settings.readyz_timeout_seconds,
        history_series_bytes=settings.history_series_mib * 2**20,
    )
    app = dash.Dash(
        __name__,
        title="pypi-pulse",
        update_title=None,  # type: ignore[arg-type]  # None turns the tab-title update off (Dash's docs)
        suppress_callback_exceptions=True,
        assets_folder=str(Path(__file__).parent / "assets"),
        serve_locally=True,
    )
    server = app.server
    server.config["PYPI_PULSE_LIMITS"] = limits
    store = UserStore(data_dir)
    app.server.config["PYPI_PULSE_USERS"] = store
    install_hardening(server, limits)
    install_probes(server, pool)
    install_auth(
        server, store, data_dir, public_api=settings.public_api, secure_cookies=settings.secure_cookies, limits=limits
    )
    ctx = DashContext.for_sink(sink_url, limits, opener=pool.opener, live_opener=pool.live_opener)
    app.server.config["PYPI_PULSE_CONTEXT"] = ctx
    app.server.config["PYPI_PULSE_READ_POOL"] = pool
    _mount_api(server, pool)
    _add_server_timing(server)
    app.layout = _layout
    # load the package list for the search box with the first signed-in page, not on the first keystroke, and not
    # at start: a worker that only ever answers sign-in attempts never loads the history's readers
    warm_once = threading.Event()

    @server.before_request
    def _warm_after_sign_in():
        if not warm_once.is_set() and getattr(g, "user", None):
            warm_once.set()
            threading.Thread(target=_warm_packages, args=(ctx,), name="package-index-load", daemon=True).start()

    @app.callback(Output("tab-content", "children"), Input("tabs", "active_tab"))
    def render(tab):
        if tab == "countries":
            return countries_tab.layout(ctx)
        if tab == "trends":
            return trends_tab.layout(ctx)
        if tab == "trending":
            return trending_tab.layout(ctx)
        if tab == "categories":
            return categories_tab.layout(ctx)
        if tab == "daily":
            return daily_tab.layout(ctx)
        return live.layout()

    app.clientside_callback(
        """function(dark) {
            const theme = dark ? 'dark' : 'light';
            document.documentElement.setAttribute('data-bs-theme', theme);
            return theme;
        }""",
        Output("theme", "data"),
        Input("theme-dark", "value"),
    )
    live.register(app, ctx)
    countries_tab.register(app, ctx)
    trends_tab.register(app, ctx)
    trending_tab.register(app, ctx)
    categories_tab.register(app, ctx)
    daily_tab.register(app, ctx)
    _set_up_dash(app)
    return app


def _set_up_dash(app: dash.Dash) -> None:
    """Dash sets itself up on a process's first request: it marks itself set up, then lists the scripts it may
    serve. Under a threaded server worker, the browser's other first requests (its scripts, at once) passed the mark
    before the list was made and were refused, and the browser was left without a dashboard. So every worker sets
    Dash up as it is made, before it takes a request."""
    with app.server.test_request_context("/"):
        app._setup_server()  # no public call does this; Dash runs it before its first request


def _warm_packages(ctx: DashContext) -> None:
    try:
        ctx.packages.index()
    except Exception as exc:  # no sink yet: the first search loads it
        log.info("package list not loaded yet", reason=str(exc))


def _add_server_timing(server) -> None:
    """A `Server-Timing` header on every response: the time spent in the app, visible in browser dev tools and
    used by the benchmark to separate server time from client and network time."""

    @server.before_request
    def _start():
        g.t0 = time.perf_counter()

    @server.after_request
    def _stop(response):
        t0 = g.get("t0")
        if t0 is not None:
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
        return response


def _mount_api(server, pool: ReadPool) -> None:
    """The history API lives in dashboard/api.py (its own engineer); mount it if present."""
    try:
        api = importlib.import_module("pypi_pulse.dashboard.api")
    except ModuleNotFoundError as exc:
        if exc.name in ("pypi_pulse.dashboard.api",):
            log.info("no JSON API module; serving the dashboard only")
            return
        raise
    from pypi_pulse.dashboard import trending

    server.register_blueprint(api.create_api_blueprint(pool.lease), url_prefix="/api")
    server.register_blueprint(trending.create_trending_blueprint(pool.lease), url_prefix="/api")
