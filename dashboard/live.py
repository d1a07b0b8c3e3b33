"""The Live tab: counters, two choropleths, the download rate over time and the top-10 treemap, every second."""

from __future__ import annotations

import time

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html

from pypi_pulse.countries import ALPHA2, name
from pypi_pulse.dashboard import figures, inputs, live_top_view
from pypi_pulse.dashboard.context import NO_DATA, DashContext
from pypi_pulse.dashboard.freshness import delayed_after_s
from pypi_pulse.dashboard.live_feed import SMOOTH_S
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.events import iso_second

RANGES = {"5 min": 300, "15 min": 900, "60 min": 3600}
RATE_WINDOW_S = 60
GRAPH_CONFIG: dcc.Graph.Config = {"displaylogo": False, "responsive": True}
# world maps are drawn from the TopoJSON shipped in assets/ (plotly.js would fetch it from its CDN otherwise)
MAP_CONFIG: dcc.Graph.Config = {**GRAPH_CONFIG, "topojsonURL": "/assets/topojson/"}
COUNTRY_OPTIONS = sorted(({"label": f"{name(c)} ({c})", "value": c} for c in ALPHA2), key=lambda o: o["label"])
COUNTRY_CODES = frozenset(o["value"] for o in COUNTRY_OPTIONS)


def _counter(title: str, cid: str, note: str) -> dbc.Col:
    return dbc.Col(
        dbc.Card(
            dbc.CardBody(
                [
                    html.Div(title, className="text-body-secondary small"),
                    html.Div("–", id=cid, className="fs-3 fw-semibold"),
                    html.Div(note, className="text-body-secondary small"),
                ]
            )
        ),
        md=3,
        sm=6,
        className="mb-3",
    )


def layout() -> html.Div:
    return html.Div(
        [
            dcc.Interval(id="live-tick", interval=1000),
            dbc.Row(
                [
                    _counter("Downloads, last minute", "live-last-minute", "sum of the last 60 one-second windows"),
                    _counter("Downloads today", "live-today", "since 00:00 UTC of the newest window, mirrors included"),
                    _counter("Rate", "live-rate", f"downloads/s, mean of the last {SMOOTH_S} s"),
                    _counter("Distinct packages", "live-distinct", "in the newest 1-second window"),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.RadioItems(
                            id="live-range",
                            options=[{"label": k, "value": v} for k, v in RANGES.items()],
                            value=300,
                            inline=True,
                        ),
                        md="auto",
                        className="mb-2",
                    ),
                    dbc.Col(
                        dcc.Dropdown(
                            id="live-countries",
                            options=COUNTRY_OPTIONS,
                            multi=True,
                            value=[],
                            placeholder="Compare countries on the rate chart…",
                        ),
                        md=6,
                        className="mb-2",
                    ),
                ],
                align="center",
            ),
            dbc.Row(
                [
                    dbc.Col(dcc.Graph(id="live-map-downloads", config=MAP_CONFIG, style={"height": "360px"}), lg=6),
                    dbc.Col(dcc.Graph(id="live-map-rate", config=MAP_CONFIG, style={"height": "360px"}), lg=6),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(dcc.Graph(id="live-rate-chart", config=GRAPH_CONFIG, style={"height": "360px"}), lg=12),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(dcc.Graph(id="live-treemap", config=GRAPH_CONFIG, style={"height": "360px"}), lg=6),
                    dbc.Col(dcc.Graph(id="live-treemap-minute", config=GRAPH_CONFIG, style={"height": "360px"}), lg=6),
                ]
            ),
        ]
    )


def _range_label(seconds: int) -> str:
    return next((k for k, v in RANGES.items() if v == seconds), f"{seconds} s")


def live_view(ctx: DashContext, seconds: int, countries: tuple[str, ...], theme: str) -> tuple:
    """Everything the Live tab shows, built once per refresh period for all viewers with the same controls."""
    seconds = seconds if seconds in RANGES.values() else 300
    try:
        newest = ctx.live.current().newest
    except NoData:
        newest = None
    return ctx.live.cache.get(
        ("view", newest, seconds, countries, theme), lambda: _build_view(ctx, seconds, countries, theme)
    )


def _build_view(ctx: DashContext, seconds: int, countries: tuple[str, ...], theme: str) -> tuple:
    try:
        counters = ctx.live.counters()
    except NoData as exc:
        counters, reason = None, f"{NO_DATA} ({exc})"
    else:
        reason = NO_DATA
    if counters is None:
        e = figures.empty(reason, theme)
        badge = dbc.Badge("no data yet", color="secondary", id="live-state")
        return ("–", "–", "–", "–", badge, e, e, e, e)
    age = time.time() - (counters.newest + 1)
    newest = f"newest window {iso_second(counters.newest)}, {_ago(age)} ago"
    down = ctx.live.unavailable_since  # this server cannot read the sink: the last data read stays on screen
    if down is not None:
        badge = dbc.Badge(
            f"data delayed · sink unavailable since {iso_second(int(down))} · {newest}", color="danger", id="live-state"
        )
    elif age <= delayed_after_s():
        badge = dbc.Badge(f"live · {iso_second(counters.newest)}", color="success", id="live-state")
    else:
        badge = dbc.Badge(
            f"data delayed since {iso_second(counters.newest + 1)} (stream paused or sink behind) · {newest}",
            color="warning",
            text_color="dark",
            id="live-state",
        )
    label = _range_label(seconds)
    by_country = ctx.live.countries(seconds)
    rate = {c: n / RATE_WINDOW_S for c, n in ctx.live.countries(RATE_WINDOW_S).items()}
    map_downloads = figures.choropleth(
        by_country, theme, f"Downloads by country, last {label}", "downloads", uirevision="downloads"
    )
    map_rate = figures.choropleth(
        rate,
        theme,
        f"Rate by country, last {RATE_WINDOW_S} s",
        "downloads/s",
        fmt=",.2f",
        colorscale="Plasma",
        uirevision="rate",
    )
    xs, total, per_country = ctx.live.series(seconds, countries, ctx.limits.live_gap_seconds)
    x = xs * 1000  # epoch milliseconds: plotly reads them as dates on a date axis
    # NaN (JSON null) where no window says anything: drawn as a gap (live_feed.gaps), not as 0/s
    series = [("all countries", total, {"line": {"width": 1.5}, "connectgaps": False})]
    series += [(name(c), per_country[c], {"line": {"width": 1.2}, "connectgaps": False}) for c in countries]
    rate_chart = figures.lines(
        x,
        series,
        theme,
        f"Downloads per second, last {label} (gaps: no data)",
        "downloads/s",
        uirevision=f"rate-{seconds}",
        xaxis={"type": "date"},
    )
    latest = ctx.live.latest()
    if latest is None:  # the feed lost its windows since the counters were read
        tree = figures.empty(NO_DATA, theme)
    else:
        tree = figures.treemap(
            latest.top, latest.downloads, theme, f"Top 10 packages, window {iso_second(latest.start)}"
        )
    return (
        f"{counters.last_minute:,}",
        f"{counters.today:,}",
        f"{counters.rate:,.1f}/s",
        f"{counters.distinct_latest:,}",
        badge,
        map_downloads,
        map_rate,
        rate_chart,
        tree,
    )


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} days"


def register(app, ctx: DashContext) -> None:
    @app.callback(
        Output("live-last-minute", "children"),
        Output("live-today", "children"),
        Output("live-rate", "children"),
        Output("live-distinct", "children"),
        Output("live-status", "children"),
        Output("live-map-downloads", "figure"),
        Output("live-map-rate", "figure"),
        Output("live-rate-chart", "figure"),
        Output("live-treemap", "figure"),
        Input("live-tick", "n_intervals"),
        Input("live-range", "value"),
        Input("live-countries", "value"),
        State("theme", "data"),
    )
    def refresh(_n, seconds, countries, theme):
        chosen = inputs.choices(countries, COUNTRY_CODES, ctx.limits.max_chart_series)
        return live_view(
            ctx, inputs.choice(seconds, RANGES.values()) or 300, tuple(sorted(chosen)), inputs.theme(theme)
        )

    @app.callback(Output("live-treemap-minute", "figure"), Input("live-tick", "n_intervals"), State("theme", "data"))
    def refresh_minute(_n, theme):
        return live_top_view.minute_treemap(ctx, inputs.theme(theme))
