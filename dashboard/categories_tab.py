"""The Categories tab (the category map: pypi_pulse/data/categories.csv, docs/categories.md): each category's share
of all categorised downloads per day, one country's category mix against the rest of the world's (does the UK
lean to NLP more than to deep learning?), and a category's most downloaded packages over the period."""

from __future__ import annotations

from typing import Optional

import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from pypi_pulse.categories import category_map
from pypi_pulse.countries import UNKNOWN, name
from pypi_pulse.dashboard import figures, inputs
from pypi_pulse.dashboard.context import NO_DATA, DashContext
from pypi_pulse.dashboard.live import COUNTRY_CODES, GRAPH_CONFIG
from pypi_pulse.dashboard.period_controls import country_column, opening_period, period_column, period_figure
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.sink import category_stats, queries

TOP_PACKAGES = 15
DEFAULT_COUNTRY = "GB"
DEFAULT_CATEGORY = "NLP"


def categories() -> list[str]:
    return sorted(set(category_map().values()))


def layout(ctx: DashContext) -> html.Div:
    period = opening_period(ctx, "categories-empty")
    if not isinstance(period, tuple):
        return period
    cats = categories()
    return html.Div(
        [
            dbc.Row(
                [
                    period_column("categories-dates", period),
                    country_column("categories-country", DEFAULT_COUNTRY),
                    dbc.Col(
                        [
                            html.Label("Category", className="form-label small"),
                            dcc.Dropdown(
                                id="categories-category",
                                options=[{"label": c, "value": c} for c in cats],
                                value=DEFAULT_CATEGORY if DEFAULT_CATEGORY in cats else cats[0],
                                clearable=False,
                            ),
                        ],
                        md=3,
                    ),
                ],
                className="mb-3 g-3",
                align="end",
            ),
            dcc.Graph(id="categories-share", config=GRAPH_CONFIG, style={"height": "440px"}),
            dbc.Row(
                [
                    dbc.Col(
                        dcc.Graph(id="categories-country-mix", config=GRAPH_CONFIG, style={"height": "460px"}), lg=7
                    ),
                    dbc.Col(dcc.Graph(id="categories-top", config=GRAPH_CONFIG, style={"height": "460px"}), lg=5),
                ],
                className="mt-3",
            ),
            html.Div(
                [
                    html.Span("Categories come from a hand-made map of well-known packages shipped with pypi-pulse "),
                    html.Code("pypi_pulse/data/categories.csv"),
                    html.Span(
                        " (docs/categories.md); country figures leave out packages whose country detail the sink "
                        "folded (their daily downloads under the fold threshold)."
                    ),
                ],
                className="small text-body-secondary mt-2",
            ),
        ]
    )


def share_figure(ctx: DashContext, start: str, end: str, theme: str) -> dict:
    title = f"Share of categorised downloads by category, per day, {start} → {end}"
    try:
        per = ctx.history("by_category_map", queries.downloads_by_category, start, end)
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    days = queries.days_between(start, end)
    totals = {d: sum(per[c].get(d, 0) for c in per) for d in days}
    if not any(totals.values()):
        return figures.empty("None of the categorised packages has downloads in this period.", theme, title)
    order = sorted(per, key=lambda c: (-sum(per[c].values()), c))
    series = [
        (
            c,
            [100 * per[c].get(d, 0) / totals[d] if totals[d] else None for d in days],
            {
                "stackgroup": "one",
                "line": {"width": 0.5},
                "customdata": [per[c].get(d, 0) for d in days],
                "hovertemplate": f"{c}: %{{y:.1f}}% (%{{customdata:,}})<extra></extra>",
            },
        )
        for c in order
    ]
    return figures.lines(days, series, theme, title, "% of categorised downloads", uirevision="category-share")


def country_mix(per_country: dict[str, dict[str, int]], country: str) -> list[tuple[str, float, float, int, int]]:
    """(category, country's share %, rest of the world's share %, country downloads, rest downloads), most
    over-represented in the country first."""
    mine = per_country.get(country, {})
    rest: dict[str, int] = {}
    for cc, cats in per_country.items():
        if cc != country:
            for c, n in cats.items():
                rest[c] = rest.get(c, 0) + n
    t_mine, t_rest = sum(mine.values()), sum(rest.values())
    rows = []
    for c in sorted(set(mine) | set(rest)):
        a = 100 * mine.get(c, 0) / t_mine if t_mine else 0.0
        b = 100 * rest.get(c, 0) / t_rest if t_rest else 0.0
        rows.append((c, a, b, mine.get(c, 0), rest.get(c, 0)))
    return sorted(rows, key=lambda r: (-(r[1] / r[2]) if r[2] else float("-inf"), r[0]))


def country_mix_figure(ctx: DashContext, country: Optional[str], start: str, end: str, theme: str) -> dict:
    if not country:
        return figures.empty("Pick a country above.", theme)
    title = f"Category mix: {name(country)} against the rest of the world"
    try:
        per = ctx.history("category_countries", category_stats.category_countries, start, end)
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    if not sum(per.get(country, {}).values()):
        return figures.empty(f"No categorised downloads from {name(country)} in this period.", theme, title)
    rows = country_mix(per, country)
    cats = [r[0] for r in rows]
    ratio = [r[1] / r[2] if r[2] else None for r in rows]
    mine = {
        "type": "bar",
        "name": name(country),
        "x": cats,
        "y": [r[1] for r in rows],
        "customdata": [[r[3], q] for r, q in zip(rows, ratio)],
        "marker": {"color": figures.COLORWAY[0]},
        "hovertemplate": "%{x}: %{y:.2f}% of " + name(country) + "'s categorised downloads (%{customdata[0]:,}), "
        "%{customdata[1]:.2f}× the rest of the world's share<extra></extra>",
    }
    rest = {
        "type": "bar",
        "name": "rest of the world",
        "x": cats,
        "y": [r[2] for r in rows],
        "customdata": [r[4] for r in rows],
        "marker": {"color": figures.COLORWAY[9]},
        "hovertemplate": "%{x}: %{y:.2f}% of the rest of the world's (%{customdata:,})<extra></extra>",
    }
    return {
        "data": [mine, rest],
        "layout": figures.base_layout(
            theme,
            title={"text": title},
            barmode="group",
            yaxis={"title": {"text": "% of categorised downloads"}},
            xaxis={"tickangle": -30},
            margin={"b": 100},
        ),
        "frames": [],
    }


def top_figure(ctx: DashContext, category: Optional[str], start: str, end: str, theme: str) -> dict:
    if not category:
        return figures.empty("Pick a category above.", theme)
    title = f"Top packages in {category}, {start} → {end}"
    try:
        rows = ctx.history("category_top", category_stats.category_top, category, start, end, TOP_PACKAGES)
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    if not rows:
        return figures.empty(f"No downloads of {category} packages in this period.", theme, title)
    return figures.top_bars(rows, theme, title, figures.COLORWAY[2], {"l": 140, "r": 20, "t": 50, "b": 40})


def register(app, ctx: DashContext) -> None:
    known = COUNTRY_CODES | {UNKNOWN}

    @app.callback(
        Output("categories-share", "figure"),
        Input("categories-dates", "start_date"),
        Input("categories-dates", "end_date"),
        Input("theme", "data"),
    )
    def update_share(start, end, theme):
        return period_figure(start, end, theme, lambda s, e, t: share_figure(ctx, s, e, t))

    @app.callback(
        Output("categories-country-mix", "figure"),
        Input("categories-country", "value"),
        Input("categories-dates", "start_date"),
        Input("categories-dates", "end_date"),
        Input("theme", "data"),
    )
    def update_mix(country, start, end, theme):
        return period_figure(
            start, end, theme, lambda s, e, t: country_mix_figure(ctx, inputs.choice(country, known), s, e, t)
        )

    @app.callback(
        Output("categories-top", "figure"),
        Input("categories-category", "value"),
        Input("categories-dates", "start_date"),
        Input("categories-dates", "end_date"),
        Input("theme", "data"),
    )
    def update_top(category, start, end, theme):
        return period_figure(
            start, end, theme, lambda s, e, t: top_figure(ctx, inputs.choice(category, categories()), s, e, t)
        )
