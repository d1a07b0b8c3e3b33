"""The Daily pattern tab: when in the day each country downloads (the last 24 hours of per-second windows, hour by
hour), when in the day all of PyPI downloads over the last weeks, and the weekly dip (downloads by day of week)."""

from __future__ import annotations

import datetime as dt
from typing import Optional

import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html

from pypi_pulse.countries import UNKNOWN, name
from pypi_pulse.dashboard import figures, inputs
from pypi_pulse.dashboard.context import NO_DATA, NO_HISTORY, DashContext
from pypi_pulse.dashboard.country_hours import HOUR_S, HOURS, CountryHours, CountryHoursCache
from pypi_pulse.dashboard.live import GRAPH_CONFIG
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.sink import daily_pattern, queries

WEEKS = (1, 4, 8, 13, 26)
DEFAULT_WEEKS = 4
TOP_COUNTRIES = 15
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NO_WINDOWS = "No per-second windows yet: the live stream fills this chart (`pypi-pulse up`)."


def layout(ctx: DashContext) -> html.Div:
    return html.Div(
        [
            dcc.Graph(id="daily-heatmap", config=GRAPH_CONFIG, style={"height": "520px"}),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            html.Label("Period of the two charts below", className="form-label small"),
                            dcc.Dropdown(
                                id="daily-weeks",
                                options=[{"label": f"last {w} week{'s' if w > 1 else ''}", "value": w} for w in WEEKS],
                                value=DEFAULT_WEEKS,
                                clearable=False,
                            ),
                        ],
                        md=3,
                    ),
                    dbc.Col(html.Div(id="daily-caption", className="small text-body-secondary"), md=9),
                ],
                className="mt-3 mb-2 g-3",
                align="end",
            ),
            dbc.Row(
                [
                    dbc.Col(dcc.Graph(id="daily-hours", config=GRAPH_CONFIG, style={"height": "380px"}), lg=7),
                    dbc.Col(dcc.Graph(id="daily-weekdays", config=GRAPH_CONFIG, style={"height": "380px"}), lg=5),
                ]
            ),
        ]
    )


def _hour_label(h: int) -> str:
    return f"{h:02d}:00"


def heatmap_figure(ch: Optional[CountryHours], theme: str) -> dict:
    """Countries (the most downloading first) by UTC hour of the day; each cell is the country's download rate in
    that hour as a share of its busiest hour, so that small countries' rhythm shows as clearly as the US's."""
    title = "Downloads by country and hour of the day (UTC), last 24 hours, % of each country's busiest hour"
    if ch is None:
        return figures.empty(NO_WINDOWS, theme, title)
    ranked = sorted((cc for cc in ch.downloads if cc != UNKNOWN), key=lambda cc: (-sum(ch.downloads[cc]), cc))
    shown = ranked[:TOP_COUNTRIES]
    if not shown:
        return figures.empty("No downloads with a known country in the last 24 hours.", theme, title)
    hod = [((ch.first_hour + i * HOUR_S) // HOUR_S) % 24 for i in range(HOURS)]  # hour of day of each hour
    order = sorted(range(HOURS), key=lambda i: hod[i])  # columns 00:00 ... 23:00
    z, custom = [], []
    for cc in reversed(shown):  # plotly draws the first row at the bottom
        rates = [ch.downloads[cc][i] / ch.seconds[i] if ch.seconds[i] else None for i in order]
        peak = max((r for r in rates if r is not None), default=0) or 1
        z.append([None if r is None else 100 * r / peak for r in rates])
        day = lambda i: dt.datetime.fromtimestamp(ch.first_hour + i * HOUR_S, dt.UTC).strftime("%Y-%m-%d")  # noqa: E731
        custom.append([[ch.downloads[cc][i], 0 if r is None else r, day(i)] for i, r in zip(order, rates)])
    trace = {
        "type": "heatmap",
        "x": [_hour_label(hod[i]) for i in order],
        "y": [name(cc) for cc in reversed(shown)],
        "z": z,
        "customdata": custom,
        "colorscale": "Viridis",
        "zmin": 0,
        "zmax": 100,
        "hoverongaps": False,
        "colorbar": {"title": {"text": "% of peak"}, "thickness": 12},
        "hovertemplate": "%{y}, %{x} UTC on %{customdata[2]}<br>%{customdata[0]:,} downloads "
        "(%{customdata[1]:,.2f}/s), %{z:.0f}% of its busiest hour<extra></extra>",
    }
    return {
        "data": [trace],
        "layout": figures.base_layout(
            theme,
            title={"text": title},
            margin={"l": 130, "r": 20, "t": 50, "b": 50},
            xaxis={"title": {"text": "hour of the day (UTC)"}, "type": "category"},
        ),
        "frames": [],
    }


def period(ctx: DashContext, weeks: int) -> Optional[tuple[str, str]]:
    """The last `weeks` whole weeks of complete days (each day of the week equally often)."""
    if ctx.history("day_range", queries.day_range) is None:
        return None
    last = dt.date.fromisoformat(ctx.history("current_day", queries.current_day)) - dt.timedelta(days=1)
    return (last - dt.timedelta(days=7 * weeks - 1)).isoformat(), last.isoformat()


def hours_figure(profile: dict[int, int], span: tuple[str, str], theme: str) -> dict:
    title = f"All downloads by hour of the day (UTC), {span[0]} → {span[1]}"
    total = sum(profile.values())
    if not total:
        return figures.empty(
            "No 10-minute block totals in this period yet: they come with the stream's sealed "
            "blocks and with `up`'s first history.",
            theme,
            title,
        )
    hours = list(range(24))
    trace = {
        "type": "bar",
        "x": [_hour_label(h) for h in hours],
        "y": [100 * profile.get(h, 0) / total for h in hours],
        "customdata": [profile.get(h, 0) for h in hours],
        "marker": {"color": figures.COLORWAY[0]},
        "hovertemplate": "%{x} UTC: %{y:.2f}% of the period's downloads (%{customdata:,})<extra></extra>",
    }
    return {
        "data": [trace],
        "layout": figures.base_layout(
            theme, title={"text": title}, yaxis={"title": {"text": "% of downloads"}}, xaxis={"type": "category"}
        ),
        "frames": [],
    }


def weekdays_figure(per: dict[int, list[int]], span: tuple[str, str], theme: str) -> dict:
    title = f"Mean downloads by day of the week, {span[0]} → {span[1]}"
    if not any(per.values()):
        return figures.empty(NO_HISTORY, theme, title)
    days = range(1, 8)
    means = [sum(per[d]) / len(per[d]) if per[d] else None for d in days]
    trace = {
        "type": "bar",
        "x": list(WEEKDAYS),
        "y": means,
        "customdata": [len(per[d]) for d in days],
        "marker": {"color": [figures.COLORWAY[1] if d >= 6 else figures.COLORWAY[0] for d in days]},
        "hovertemplate": "%{x}: %{y:,.0f} downloads a day (mean of %{customdata} days)<extra></extra>",
    }
    return {
        "data": [trace],
        "layout": figures.base_layout(theme, title={"text": title}, yaxis={"title": {"text": "downloads/day"}}),
        "frames": [],
    }


def register(app, ctx: DashContext) -> None:
    cache = CountryHoursCache(ctx.limits.lateness_seconds)

    @app.callback(Output("daily-heatmap", "figure"), Input("theme", "data"))
    def update_heatmap(theme):
        theme = inputs.theme(theme)
        try:
            ch = ctx.history_cache.get(("country-hours",), lambda: cache.get(ctx.query))
        except NoData:
            return figures.empty(NO_DATA, theme)
        return heatmap_figure(ch, theme)

    @app.callback(
        Output("daily-hours", "figure"),
        Output("daily-weekdays", "figure"),
        Output("daily-caption", "children"),
        Input("daily-weeks", "value"),
        Input("theme", "data"),
    )
    def update_rhythm(weeks, theme):
        theme = inputs.theme(theme)
        weeks = inputs.choice(weeks, WEEKS) or DEFAULT_WEEKS
        try:
            span = period(ctx, weeks)
            if span is None:
                e = figures.empty(NO_HISTORY, theme)
                return e, e, ""
            profile = ctx.history("hour-profile", daily_pattern.hour_profile, *span)
            per = ctx.history("weekdays", daily_pattern.weekday_totals, *span)
        except NoData:
            e = figures.empty(NO_DATA, theme)
            return e, e, ""
        caption = (
            f"{span[0]} → {span[1]}: the last {weeks} whole week{'s' if weeks > 1 else ''} of complete "
            "days; hours from the 10-minute rollup blocks' totals, days from the daily totals."
        )
        return hours_figure(profile, span, theme), weekdays_figure(per, span, theme), caption
