"""The Countries tab: downloads per country over a period (all packages or one), a country's top 5 packages, and
two packages compared country by country."""

from __future__ import annotations

from typing import Optional

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update
from dash import ctx as callback_ctx

from pypi_pulse.countries import ALPHA2_OF_ALPHA3, UNKNOWN, name
from pypi_pulse.dashboard import figures, inputs
from pypi_pulse.dashboard.context import NO_DATA, DashContext
from pypi_pulse.dashboard.live import COUNTRY_CODES, GRAPH_CONFIG, MAP_CONFIG
from pypi_pulse.dashboard.period_controls import country_column, opening_period, period_column, period_figure
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.names import normalize
from pypi_pulse.sink import queries
from pypi_pulse.sink.country_tops import CountryTop, all_country_tops

ALPHA2_OF = ALPHA2_OF_ALPHA3  # the map's ISO-3 locations back to the codes events carry (XKX: XK)
HOVER_TOP = 5


def layout(ctx: DashContext) -> html.Div:
    period = opening_period(ctx, "countries-empty")
    if not isinstance(period, tuple):
        return period
    _first, _last, start, end = period
    top = ctx.default_packages(2)
    a = top[0] if top else None
    b = top[1] if len(top) > 1 else None
    countries = ctx.history("countries", queries.countries, start, end, None)
    country = next((c for c, _ in countries if c != UNKNOWN), None)
    picker = lambda cid, value, placeholder: dcc.Dropdown(  # noqa: E731
        id=cid,
        options=[{"label": value, "value": value}] if value else [],
        value=value,
        placeholder=placeholder,
        clearable=True,
    )
    return html.Div(
        [
            dbc.Row(
                [
                    period_column("countries-dates", period),
                    dbc.Col(
                        [
                            html.Label("Package (empty: all packages)", className="form-label small"),
                            picker("countries-package", None, "Type to search packages…"),
                        ],
                        md=4,
                    ),
                    country_column("countries-country", country),
                ],
                className="mb-3 g-3",
                align="end",
            ),
            dbc.Row(
                [
                    dbc.Col(dcc.Graph(id="countries-map", config=MAP_CONFIG, style={"height": "420px"}), lg=8),
                    dbc.Col(dcc.Graph(id="countries-top5", config=GRAPH_CONFIG, style={"height": "420px"}), lg=4),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            html.Label("Compare package", className="form-label small"),
                            picker("scatter-a", a, "Package on the x axis…"),
                        ],
                        md=4,
                    ),
                    dbc.Col(
                        [
                            html.Label("with package", className="form-label small"),
                            picker("scatter-b", b, "Package on the y axis…"),
                        ],
                        md=4,
                    ),
                ],
                className="mt-3 g-3",
            ),
            dcc.Graph(id="countries-scatter", config=GRAPH_CONFIG, style={"height": "420px"}),
        ]
    )


def map_figure(ctx: DashContext, start: str, end: str, package: Optional[str], theme: str) -> dict:
    what = package or "all packages"
    title = f"Downloads by country, {what}, {start} → {end}"
    try:
        rows = ctx.history("countries", queries.countries, start, end, package)
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    if not rows:
        return figures.empty(
            f"No downloads of {what} in this period: pick a wider period or another package.", theme, title
        )
    hover = None
    if package is None:
        tops = ctx.history("all_country_tops", all_country_tops, start, end, HOVER_TOP)
        hover = {cc: hover_text(top) for cc, top in tops.items()}
    return figures.choropleth(dict(rows), theme, title, "downloads", uirevision="countries", hover=hover)


def hover_text(top: CountryTop) -> str:
    """A country's top packages as lines of its map hover label; marked when the summaries cannot vouch for them."""
    lines = [f"{i}. {p}: {n:,}" for i, (p, n) in enumerate(top.rows, 1)]
    if not top.exact:
        lines.append("<i>approximate (from daily top lists): click for exact figures</i>")
    return "<br>".join(lines)


def top5_figure(ctx: DashContext, country: Optional[str], start: str, end: str, theme: str) -> dict:
    if not country:
        return figures.empty("Click or hover over a country on the map, or pick one above.", theme)
    title = f"Top 5 packages in {name(country)}"
    try:
        rows = ctx.history("country_top", queries.country_top, country, start, end, 5)
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    if not rows:
        return figures.empty(f"No downloads from {name(country)} in this period.", theme, title)
    return figures.top_bars(rows, theme, title, figures.COLORWAY[0], {"l": 120, "r": 20, "t": 40, "b": 40})


def scatter_figure(ctx: DashContext, a: Optional[str], b: Optional[str], start: str, end: str, theme: str) -> dict:
    if not a or not b:
        return figures.empty("Pick two packages to compare them country by country.", theme)
    title = f"{a} vs {b} by country (log axes)"
    try:
        both = ctx.history("countries_of", queries.countries_of, start, end, tuple(sorted({a, b})))
        ra, rb = dict(both[normalize(a)]), dict(both[normalize(b)])
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    common = sorted(
        (c for c in ra.keys() & rb.keys() if c != UNKNOWN and ra[c] > 0 and rb[c] > 0), key=lambda c: -ra[c]
    )
    if not common:
        return figures.empty(f"{a} and {b} share no country in this period.", theme, title)
    trace = {
        "type": "scatter",
        "mode": "markers",
        "x": [ra[c] for c in common],
        "y": [rb[c] for c in common],
        "text": [name(c) for c in common],
        "customdata": common,
        "marker": {"size": 9, "color": figures.COLORWAY[1], "opacity": 0.8},
        "hovertemplate": "%{text}<br>" + a + ": %{x:,}<br>" + b + ": %{y:,}<extra></extra>",
    }
    return {
        "data": [trace],
        "layout": figures.base_layout(
            theme,
            title={"text": title},
            xaxis=figures.log_axis(theme, f"{a} downloads"),
            yaxis=figures.log_axis(theme, f"{b} downloads"),
        ),
        "frames": [],
    }


def search_options(ctx: DashContext, search: object, current: object) -> list[dict]:
    """Dropdown options for a search: the matches plus the current value(s), so a selection never disappears."""
    lim = ctx.limits
    values = inputs.packages(current, lim.max_chart_series, lim.max_name_chars)
    query = inputs.text(search)
    found = ctx.packages.search(query, 20) if query and len(query) <= lim.max_name_chars else []
    return [{"label": v, "value": v} for v in dict.fromkeys([*values, *found])]


def register(app, ctx: DashContext) -> None:
    known = COUNTRY_CODES | frozenset(ALPHA2_OF.values())

    def package(value: object) -> Optional[str]:
        return next(iter(inputs.packages(value, 1, ctx.limits.max_name_chars)), None)

    def country_at(event: object) -> Optional[str]:
        loc = inputs.first_point(event).get("location")
        return ALPHA2_OF.get(loc) if isinstance(loc, str) else None

    for cid in ("countries-package", "scatter-a", "scatter-b"):
        app.callback(
            Output(cid, "options"), Input(cid, "search_value"), State(cid, "value"), prevent_initial_call=True
        )(lambda search, value: search_options(ctx, search, value) if search else no_update)

    @app.callback(
        Output("countries-map", "figure"),
        Input("countries-dates", "start_date"),
        Input("countries-dates", "end_date"),
        Input("countries-package", "value"),
        Input("theme", "data"),
    )
    def update_map(start, end, chosen, theme):
        return period_figure(start, end, theme, lambda s, e, t: map_figure(ctx, s, e, package(chosen), t))

    @app.callback(Output("countries-country", "value"), Input("countries-map", "clickData"), prevent_initial_call=True)
    def pick_country(click):
        return country_at(click) or no_update

    @app.callback(
        Output("countries-top5", "figure"),
        Input("countries-country", "value"),
        Input("countries-map", "hoverData"),
        Input("countries-dates", "start_date"),
        Input("countries-dates", "end_date"),
        Input("theme", "data"),
    )
    def update_top5(country, hover, start, end, theme):
        country = inputs.choice(country, known)
        if callback_ctx.triggered_id == "countries-map":
            country = country_at(hover) or country
        return period_figure(start, end, theme, lambda s, e, t: top5_figure(ctx, country, s, e, t))

    @app.callback(
        Output("countries-scatter", "figure"),
        Input("scatter-a", "value"),
        Input("scatter-b", "value"),
        Input("countries-dates", "start_date"),
        Input("countries-dates", "end_date"),
        Input("theme", "data"),
    )
    def update_scatter(a, b, start, end, theme):
        return period_figure(start, end, theme, lambda s, e, t: scatter_figure(ctx, package(a), package(b), s, e, t))
