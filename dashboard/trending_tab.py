"""The Trending tab: the packages downloaded most above their usual level for these hours of the week, as a bar
chart of the ratio and a table of the figures (the same rows as `GET /api/trending`; sink/trending.py defines
them). Refreshed every minute; the window moves by whole hours as sealed blocks reach the sink."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from pypi_pulse.dashboard import figures, inputs
from pypi_pulse.dashboard.context import NO_DATA, DashContext
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.events import iso_second
from pypi_pulse.sink.trending import Trending, TrendingOptions

WINDOWS = (1, 3, 6, 12, 24)  # those up to the setting trending_max_window_hours are offered
SHOWN = 20
REFRESH_MS = 60_000
NO_TRENDING = (
    "Nothing to compare yet: trending needs the stream's sealed blocks (the lateness horizon plus a "
    "10-minute block, about 20 minutes after `pypi-pulse up` starts) and past days to compare with."
)


def layout(ctx: DashContext) -> html.Div:
    hours = [h for h in WINDOWS if h <= TrendingOptions.current().max_window_hours]
    options = [{"label": f"last {h} hour{'s' if h > 1 else ''}", "value": h} for h in hours]
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(
                        [
                            html.Label("Window", className="form-label small"),
                            dcc.Dropdown(id="trending-window", options=options, value=1, clearable=False),
                        ],
                        md=3,
                    ),
                    dbc.Col(html.Div(id="trending-caption", className="small text-body-secondary"), md=9),
                ],
                className="mb-3 g-3",
                align="end",
            ),
            dcc.Graph(id="trending-chart", config={"displaylogo": False}, style={"height": "520px"}),
            html.Div(id="trending-table", className="mt-3"),
            dcc.Interval(id="trending-refresh", interval=REFRESH_MS),
        ]
    )


def compute(ctx: DashContext, hours: int, options: TrendingOptions) -> Trending:
    return ctx.history(("trending", hours), lambda db: options.compute(db, hours, SHOWN))


def caption(t: Trending, options: TrendingOptions) -> str:
    if t.start is None or t.end is None:
        return NO_TRENDING
    return (
        f"{iso_second(t.start)} → {iso_second(t.end)} (whole hours the sealed rollup blocks reach), against "
        f"the same hours of the week over the last {options.baseline_weeks} weeks; packages with at least "
        f"{options.min_downloads:,} downloads an hour."
    )


def chart(t: Trending, theme: str) -> dict:
    title = "Downloads over their usual level for these hours"
    if t.start is None:
        return figures.empty(NO_TRENDING, theme, title)
    if not t.rows:
        return figures.empty("No package above the minimum in this window.", theme, title)
    rows = list(reversed(t.rows))
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [r["project"] for r in rows],
        "x": [r["ratio"] for r in rows],
        "customdata": [[r["downloads"], r["baseline"]] for r in rows],
        "hovertemplate": "%{y}: %{x:.2f}× usual<br>%{customdata[0]:,} downloads, usually %{customdata[1]:,.0f}"
        "<extra></extra>",
        "marker": {"color": figures.COLORWAY[3]},
    }
    return {
        "data": [trace],
        "layout": figures.base_layout(
            theme,
            title={"text": title},
            xaxis=figures.log_axis(theme, "× usual level (log)"),
            margin={"l": 160, "r": 20, "t": 50, "b": 50},
        ),
        "frames": [],
    }


def table(t: Trending) -> html.Div | dbc.Table:
    if not t.rows:
        return html.Div()
    head = html.Thead(html.Tr([html.Th("package"), html.Th("downloads"), html.Th("usual"), html.Th("× usual")]))
    body = html.Tbody(
        [
            html.Tr(
                [
                    html.Td(r["project"]),
                    html.Td(f"{r['downloads']:,}"),
                    html.Td(f"{r['baseline']:,.0f}"),
                    html.Td(f"{r['ratio']:.2f}"),
                ]
            )
            for r in t.rows
        ]
    )
    return dbc.Table([head, body], id="trending-rows", size="sm", striped=True, hover=True)


def register(app, ctx: DashContext, options: TrendingOptions | None = None) -> None:
    options = options or TrendingOptions.current()

    @app.callback(
        Output("trending-chart", "figure"),
        Output("trending-table", "children"),
        Output("trending-caption", "children"),
        Input("trending-window", "value"),
        Input("trending-refresh", "n_intervals"),
        Input("theme", "data"),
    )
    def update(hours, _tick, theme):
        theme = inputs.theme(theme)
        hours = hours if hours in WINDOWS and hours <= options.max_window_hours else 1
        try:
            t = compute(ctx, hours, options)
        except NoData:
            return figures.empty(NO_DATA, theme), html.Div(), NO_DATA
        return chart(t, theme), table(t), caption(t, options)
