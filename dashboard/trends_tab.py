"""The Package trends tab: daily downloads of chosen packages with moving averages, one package's breakdown by a
metric, and downloads over time by category."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Optional

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from pypi_pulse.countries import name as country_name
from pypi_pulse.dashboard import figures, inputs
from pypi_pulse.dashboard.context import NO_DATA, NO_HISTORY, DashContext
from pypi_pulse.dashboard.countries_tab import search_options
from pypi_pulse.dashboard.live import GRAPH_CONFIG
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.sink import queries

METRICS = {
    "python_minor": "Python version",
    "system": "System",
    "installer": "Installer",
    "country": "Country",
    "cpu": "CPU",
    "file_type": "File type",
    "version": "Package version",
    "ci": "CI share",
}
MOVING_AVERAGES = (10, 20, 30)
TOP_CATEGORIES = 8


def partial_tail(ctx: DashContext, days: list[str]) -> int:
    """How many of the last days of a chart the rollups do not hold whole yet (the day in progress, and the day
    before it for the first minutes after midnight): drawn apart as "so far", or left out of stacked charts."""
    tail = tuple(days[-2:])
    partial = set(ctx.history("partial_days", queries.partial_days, tail))
    n = 0
    for d in reversed(days):
        if d not in partial:
            break
        n += 1
    return n


PARTIAL_NOTE = " · today so far left out (its day is not complete)"


def moving_average(values: Sequence[float], n: int) -> list[Optional[float]]:
    """Trailing mean over n days; None until n days are available."""
    out: list[Optional[float]] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= n:
            total -= values[i - n]
        out.append(total / n if i >= n - 1 else None)
    return out


def layout(ctx: DashContext) -> html.Div:
    try:
        rng = ctx.history("day_range", queries.day_range)
    except NoData:
        rng = None
    if rng is None:
        return dbc.Alert(NO_HISTORY + " " + NO_DATA.split(":", 1)[1], color="info", id="trends-empty")
    first, last = rng
    chosen = ctx.default_packages(2)
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(
                        [
                            html.Label("Packages (type to search all known packages)", className="form-label small"),
                            dcc.Dropdown(
                                id="trends-packages",
                                options=[{"label": p, "value": p} for p in chosen],
                                value=chosen,
                                multi=True,
                                placeholder="Type a package name…",
                            ),
                        ],
                        md=7,
                    ),
                    dbc.Col(
                        [
                            html.Label("Moving averages", className="form-label small"),
                            dbc.Checklist(
                                id="trends-ma",
                                options=[{"label": f"{n} days", "value": n} for n in MOVING_AVERAGES],
                                value=list(MOVING_AVERAGES),
                                inline=True,
                            ),
                        ],
                        md=5,
                    ),
                ],
                className="mb-2 g-3",
                align="end",
            ),
            dcc.Graph(id="trends-daily", config=GRAPH_CONFIG, style={"height": "440px"}),
            html.H6("Breakdown of the first package", className="mt-3"),
            dbc.RadioItems(
                id="trends-metric",
                options=[{"label": v, "value": k} for k, v in METRICS.items()],
                value="python_minor",
                inline=True,
                className="mb-2",
            ),
            dcc.Graph(id="trends-breakdown", config=GRAPH_CONFIG, style={"height": "400px"}),
            dcc.Graph(id="trends-categories", config=GRAPH_CONFIG, style={"height": "420px"}, className="mt-3"),
            html.Div(
                [
                    html.Span("Categories come from a hand-made map of well-known packages shipped with pypi-pulse "),
                    html.Code("pypi_pulse/data/categories.csv"),
                    html.Span(" (see docs/categories.md)."),
                ],
                className="small text-body-secondary",
            ),
        ]
    )


def daily_figure(ctx: DashContext, packages: Sequence[str], mas: Sequence[int], theme: str) -> dict:
    title = "Daily downloads (without mirrors)"
    if not packages:
        return figures.empty("Pick one or more packages above (type at least two letters to search).", theme, title)
    try:
        rng = ctx.history("day_range", queries.day_range)
        if rng is None:
            return figures.empty(NO_HISTORY, theme, title)
        data = ctx.history("compare", queries.compare, tuple(sorted(packages)), rng[0], rng[1])
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    all_days = queries.days_between(*rng)
    n_partial = partial_tail(ctx, all_days)
    days = all_days[: len(all_days) - n_partial]
    series: list[tuple[str, Sequence[Optional[float]], dict]] = []
    missing = []
    for i, p in enumerate(packages):
        rows = dict(data.get(p, ()))
        if not rows:
            missing.append(p)
            continue
        color = figures.COLORWAY[i % len(figures.COLORWAY)]
        ys = [rows.get(d, 0) for d in days]
        series.append((p, ys + [None] * n_partial, {"line": {"color": color, "width": 1.4}, "legendgroup": p}))
        if n_partial:  # a dashed segment from the last complete day to the day(s) in progress
            tail = (
                [None] * (len(days) - 1) + ([ys[-1]] if days else []) + [rows.get(d, 0) for d in all_days[len(days) :]]
            )
            series.append(
                (
                    f"{p} · today so far",
                    tail,
                    {
                        "line": {"color": color, "width": 1.4, "dash": "dash"},
                        "legendgroup": p,
                        "mode": "lines+markers",
                        "marker": {"symbol": "circle-open", "size": 7},
                        "hovertemplate": "%{y:,} so far<extra>" + p + "</extra>",
                    },
                )
            )
        for n, dash in zip(MOVING_AVERAGES, ("dot", "dash", "longdash")):
            if n in (mas or ()):  # over complete days only
                series.append(
                    (
                        f"{p} · {n}-day average",
                        moving_average(ys, n) + [None] * n_partial,
                        {"line": {"color": color, "width": 1, "dash": dash}, "legendgroup": p, "opacity": 0.8},
                    )
                )
    if not series:
        return figures.empty(
            f"No downloads recorded for {', '.join(missing)}: check the name, or pick a package from the search list.",
            theme,
            title,
        )
    if missing:
        title += f" — no data for {', '.join(missing)}"
    if n_partial:
        title += " · dashed: today so far (day not complete)"
    return figures.lines(
        all_days, series, theme, title, "downloads/day", rangeslider=True, uirevision="daily", margin={"b": 20}
    )


def breakdown_figure(ctx: DashContext, package: Optional[str], metric: str, theme: str) -> dict:
    label = METRICS.get(metric, metric)
    if not package:
        return figures.empty("Pick a package above to see its breakdown.", theme, label)
    title = f"{package} by {label.lower()}"
    try:
        rng = ctx.history("day_range", queries.day_range)
        if rng is None:
            return figures.empty(NO_HISTORY, theme, title)
        rows = ctx.history("by_category", queries.daily_by_category, package, metric, rng[0], rng[1])
        overall = (
            ctx.history("by_category", queries.daily_by_category, package, "overall", rng[0], rng[1])
            if metric == "ci"
            else []
        )
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    if not rows and not overall:
        return figures.empty(f"No breakdown recorded for {package}: pick another package.", theme, title)
    days = queries.days_between(*rng)
    n_partial = partial_tail(ctx, days)
    if n_partial and len(days) > n_partial:
        days = days[:-n_partial]
        title += PARTIAL_NOTE
    if metric == "ci":
        ci = {d: n for d, c, n in rows if c == "true"}
        tot = {d: n for d, _, n in overall}
        share = [100.0 * ci.get(d, 0) / tot[d] if tot.get(d) else None for d in days]
        return figures.lines(
            days,
            [("CI share", share, {"line": {"width": 1.5}})],
            theme,
            f"{package}: share of downloads from CI (%)",
            "% of downloads",
            uirevision="breakdown",
        )
    by_cat: dict[Optional[str], dict[str, int]] = defaultdict(dict)
    totals: dict[Optional[str], int] = defaultdict(int)
    for d, c, n in rows:
        by_cat[c][d] = n
        totals[c] += n
    ranked = sorted(totals, key=lambda c: (-totals[c], str(c)))
    shown, rest = ranked[:TOP_CATEGORIES], ranked[TOP_CATEGORIES:]
    label_of = (
        (lambda c: "unknown" if c is None else f"{country_name(c)} ({c})")
        if metric == "country"
        else (lambda c: "unknown" if c is None else c)
    )
    series = [
        (label_of(c), [by_cat[c].get(d, 0) for d in days], {"stackgroup": "one", "line": {"width": 0.5}}) for c in shown
    ]
    if rest:
        series.append(
            (
                f"{len(rest)} others",
                [sum(by_cat[c].get(d, 0) for c in rest) for d in days],
                {"stackgroup": "one", "line": {"width": 0.5}},
            )
        )
    return figures.lines(days, series, theme, title, "downloads/day", uirevision="breakdown")


def categories_figure(ctx: DashContext, theme: str) -> dict:
    title = "Downloads by category (packages in the shipped category map)"
    try:
        rng = ctx.history("day_range", queries.day_range)
        if rng is None:
            return figures.empty(NO_HISTORY, theme, title)
        per = ctx.history("by_category_map", queries.downloads_by_category, rng[0], rng[1])
    except NoData:
        return figures.empty(NO_DATA, theme, title)
    if not per:
        return figures.empty("None of the categorised packages has downloads yet.", theme, title)
    days = queries.days_between(*rng)
    n_partial = partial_tail(ctx, days)
    if n_partial and len(days) > n_partial:
        days = days[:-n_partial]
        title += PARTIAL_NOTE
    order = sorted(per, key=lambda c: -sum(per[c].values()))
    series = [(c, [per[c].get(d, 0) for d in days], {"stackgroup": "one", "line": {"width": 0.5}}) for c in order]
    return figures.lines(days, series, theme, title, "downloads/day", uirevision="categories")


def register(app, ctx: DashContext) -> None:
    @app.callback(
        Output("trends-packages", "options"),
        Input("trends-packages", "search_value"),
        State("trends-packages", "value"),
        prevent_initial_call=True,
    )
    def search(search, value):
        return search_options(ctx, search, value) if search else no_update

    @app.callback(
        Output("trends-daily", "figure"),
        Input("trends-packages", "value"),
        Input("trends-ma", "value"),
        Input("theme", "data"),
    )
    def update_daily(packages, mas, theme):
        lim = ctx.limits
        return daily_figure(
            ctx,
            inputs.packages(packages, lim.max_chart_series, lim.max_name_chars),
            inputs.choices(mas, MOVING_AVERAGES, len(MOVING_AVERAGES)),
            inputs.theme(theme),
        )

    @app.callback(
        Output("trends-breakdown", "figure"),
        Input("trends-packages", "value"),
        Input("trends-metric", "value"),
        Input("theme", "data"),
    )
    def update_breakdown(packages, metric, theme):
        first = inputs.packages(packages, 1, ctx.limits.max_name_chars)
        metric = inputs.choice(metric, METRICS) or "python_minor"
        return breakdown_figure(ctx, first[0] if first else None, metric, inputs.theme(theme))

    @app.callback(Output("trends-categories", "figure"), Input("theme", "data"))
    def update_categories(theme):
        return categories_figure(ctx, inputs.theme(theme))
