"""What the tabs over a chosen period of daily rollups (Countries, Categories) share: the period they open on, the
date and country pickers, and the check every figure callback makes that the picked period is usable.

One place so that the tabs open, refuse a bad period and say what to pick in the same words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Optional, Union

import dash_bootstrap_components as dbc
from dash import dcc, html

from pypi_pulse.dashboard import figures, inputs
from pypi_pulse.dashboard.context import NO_DATA, NO_HISTORY, DashContext
from pypi_pulse.dashboard.live import COUNTRY_OPTIONS
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.sink import queries

DEFAULT_DAYS = 30

Period = tuple[str, str, str, str]


def default_period(ctx: DashContext) -> Optional[Period]:
    """(first day, last day, default start, default end): the last 30 days that have rollups."""
    rng = ctx.history("day_range", queries.day_range)
    if rng is None:
        return None
    first, last = rng
    start = max(first, (dt.date.fromisoformat(last) - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat())
    return first, last, start, last


def opening_period(ctx: DashContext, alert_id: str) -> Union[Period, dbc.Alert]:
    """The period a tab opens on, or (no rollups yet, or none readable) the alert the tab shows instead."""
    try:
        period = default_period(ctx)
    except NoData:
        period = None
    if period is None:
        return dbc.Alert(NO_HISTORY + " " + NO_DATA.split(":", 1)[1], color="info", id=alert_id)
    return period


def period_column(picker_id: str, period: Period) -> dbc.Col:
    """The "Period" date range picker, bounded by the days that have rollups."""
    first, last, start, end = period
    return dbc.Col(
        [
            html.Label("Period", className="form-label small"),
            dcc.DatePickerRange(
                id=picker_id,
                min_date_allowed=first,
                max_date_allowed=last,
                start_date=start,
                end_date=end,
                display_format="YYYY-MM-DD",
            ),
        ],
        md="auto",
    )


def country_column(dropdown_id: str, country: Optional[str]) -> dbc.Col:
    """The "Country" dropdown, one country always chosen."""
    return dbc.Col(
        [
            html.Label("Country", className="form-label small"),
            dcc.Dropdown(id=dropdown_id, options=COUNTRY_OPTIONS, value=country, clearable=False),
        ],
        md=3,
    )


def _usable_period(start: object, end: object, theme: str) -> Union[tuple[str, str], dict]:
    """(start, end) for a usable period, else the empty figure saying what to pick."""
    s, e = inputs.day(start), inputs.day(end)
    if s is None or e is None:
        return figures.empty("Pick the start and the end of the period.", theme)
    if s > e:
        return figures.empty(f"The period starts ({s}) after it ends ({e}): pick the dates again.", theme)
    return s, e


def period_figure(start: object, end: object, theme: object, draw: Callable[[str, str, str], dict]) -> dict:
    """The figure `draw(start, end, theme)` draws over the picked period once it is usable, else the figure saying
    what to pick; what a figure callback of these tabs answers."""
    shown = inputs.theme(theme)
    period = _usable_period(start, end, shown)
    if isinstance(period, dict):
        return period
    return draw(*period, shown)
