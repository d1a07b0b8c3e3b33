"""Plotly figures as plain dicts, in the page's light or dark theme.

Dicts instead of `plotly.graph_objects` because the Live tab rebuilds its figures every second for every viewer
and graph_objects validation would cost more than the data itself; the dicts follow the plotly.js schema.
Long numeric series are numpy arrays, which Dash's JSON encoder (orjson) writes without a Python loop.
Exact numbers go in `customdata` (the colour of a log-scaled choropleth is log10 of them), which is also what the
browser tests read back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from pypi_pulse.countries import UNKNOWN, alpha3, name

THEMES = {
    "light": {"font": "#212529", "grid": "#dee2e6", "land": "#f1f3f5", "ocean": "#e7f1fb", "line": "#adb5bd"},
    "dark": {"font": "#dee2e6", "grid": "#495057", "land": "#343a40", "ocean": "#1b2128", "line": "#6c757d"},
}
COLORWAY = [
    "#0d6efd",
    "#fd7e14",
    "#20c997",
    "#d63384",
    "#6f42c1",
    "#ffc107",
    "#198754",
    "#0dcaf0",
    "#dc3545",
    "#6c757d",
]


def base_layout(theme: str, **extra) -> dict:
    t = THEMES.get(theme, THEMES["light"])
    layout: dict[str, Any] = {
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": t["font"], "family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12},
        "colorway": COLORWAY,
        "margin": {"l": 50, "r": 20, "t": 60, "b": 40},
        "xaxis": {"gridcolor": t["grid"], "zerolinecolor": t["grid"]},
        "yaxis": {"gridcolor": t["grid"], "zerolinecolor": t["grid"]},
        # right of the plot, from its top down: the mode bar (on hover) and the title share the band above it
        "legend": {"orientation": "v", "y": 1.0, "yanchor": "top", "x": 1.02, "xanchor": "left"},
        "hoverlabel": {"namelength": -1},
        "title": {"x": 0.01, "xanchor": "left", "font": {"size": 15}},  # left, clear of the mode bar on the right
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(layout.get(k), dict):
            layout[k] = {**layout[k], **v}
        else:
            layout[k] = v
    return layout


def log_axis(theme: str, title: str) -> dict:
    """A log axis labelled at powers of ten only (plotly labels 2 and 5 in between too, which crowds the axis),
    with unlabelled minor grid lines between them."""
    t = THEMES.get(theme, THEMES["light"])
    return {
        "type": "log",
        "title": {"text": title},
        "dtick": 1,
        "tickformat": ",~g",
        "minor": {"showgrid": True, "gridcolor": t["grid"], "griddash": "dot", "ticks": ""},
    }


def empty(message: str, theme: str = "light", title: str = "") -> dict:
    """A chart that says what to do instead of showing blank axes."""
    return {
        "data": [],
        "layout": base_layout(
            theme,
            title={"text": title},
            xaxis={"visible": False},
            yaxis={"visible": False},
            annotations=[
                {
                    "text": message,
                    "showarrow": False,
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                    "font": {"size": 14},
                }
            ],
        ),
        "frames": [],
    }


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    vals: list[float] = list(range(int(math.floor(lo)), int(math.ceil(hi)) + 1)) or [0]
    return vals, [f"{10**v:,.0f}" if v >= 0 else f"{10**v:g}" for v in vals]


def choropleth(
    values: Mapping[str, float],
    theme: str,
    title: str,
    unit: str,
    fmt: str = ",.0f",
    colorscale: str = "Viridis",
    uirevision: str = "map",
    hover: Optional[dict[str, str]] = None,
) -> dict:
    """World map of alpha-2 keyed values on a log colour scale (the US alone is most of PyPI). `hover` adds a line
    or more of text to a country's hover label (the Countries tab's top 5)."""
    t = THEMES.get(theme, THEMES["light"])
    rows = sorted(
        ((alpha3(c), c, v) for c, v in values.items() if c != UNKNOWN and v > 0 and alpha3(c)), key=lambda r: -r[2]
    )
    if not rows:
        return empty("No downloads with a known country in this period.", theme, title)
    z = [math.log10(v) for _, _, v in rows]
    tickvals, ticktext = _log_ticks(min(z), max(z))
    trace = {
        "type": "choropleth",
        "locations": [a for a, _, _ in rows],
        "z": z,
        "customdata": [v for _, _, v in rows],
        "text": [name(c) for _, c, _ in rows],
        "hovertemplate": "<b>%{text}</b>: %{customdata:"
        + fmt
        + "} "
        + unit
        + ("<br>%{hovertext}" if hover is not None else "")
        + "<extra></extra>",
        "colorscale": colorscale,
        "zmin": tickvals[0],
        "zmax": tickvals[-1],
        "marker": {"line": {"color": t["line"], "width": 0.3}},
        "colorbar": {"tickvals": tickvals, "ticktext": ticktext, "title": {"text": unit}, "thickness": 12, "len": 0.8},
    }
    if hover is not None:
        trace["hovertext"] = [hover.get(c, "") for _, c, _ in rows]
    # cropped to where people live (no Antarctica); no ocean fill, whose outline the crop would cut flat at the
    # bottom and top; the map is centred in its box with a little room below Cape Horn
    geo = {
        "showframe": False,
        "showcoastlines": False,
        "projection": {"type": "natural earth"},
        "bgcolor": "rgba(0,0,0,0)",
        "showland": True,
        "landcolor": t["land"],
        "showocean": False,
        "showlakes": False,
        "showcountries": True,
        "countrycolor": t["line"],
        "lataxis": {"range": [-60, 85]},
        "domain": {"x": [0, 1], "y": [0.02, 1]},
    }
    return {
        "data": [trace],
        "layout": base_layout(
            theme, title={"text": title}, geo=geo, uirevision=uirevision, margin={"l": 0, "r": 0, "t": 40, "b": 0}
        ),
        "frames": [],
    }


def treemap(top: Sequence[tuple[str, int]], window_total: int, theme: str, title: str) -> dict:
    """Plotly's own squarified treemap of the top packages, with each one's share of all downloads in the window."""
    if not top:
        return empty("No packages in the latest window.", theme, title)
    trace = {
        "type": "treemap",
        "labels": [p for p, _ in top],
        "parents": ["" for _ in top],
        "values": [n for _, n in top],
        "customdata": [n / window_total if window_total else 0 for _, n in top],
        "texttemplate": "<b>%{label}</b><br>%{value:,}<br>%{customdata:.1%}",
        "hovertemplate": "%{label}: %{value:,} downloads, %{customdata:.1%} of the window<extra></extra>",
        "tiling": {"packing": "squarify"},
        "root": {"color": "rgba(0,0,0,0)"},
        "marker": {"colors": [COLORWAY[i % len(COLORWAY)] for i in range(len(top))], "line": {"width": 1}},
        "sort": True,
    }
    return {
        "data": [trace],
        "layout": base_layout(theme, title={"text": title}, margin={"l": 5, "r": 5, "t": 40, "b": 5}),
        "frames": [],
    }


def top_bars(rows: Sequence[tuple[str, int]], theme: str, title: str, color: str, margin: dict) -> dict:
    """A top list of (package, downloads) as horizontal bars, the first at the top."""
    rows = list(reversed(rows))
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [p for p, _ in rows],
        "x": [n for _, n in rows],
        "hovertemplate": "%{y}: %{x:,} downloads<extra></extra>",
        "marker": {"color": color},
    }
    return {"data": [trace], "layout": base_layout(theme, title={"text": title}, margin=margin), "frames": []}


def lines(
    x: Sequence,
    series: Iterable[tuple[str, Sequence[Optional[float]], dict]],
    theme: str,
    title: str,
    yaxis_title: str = "",
    rangeslider: bool = False,
    uirevision: Optional[str] = None,
    **layout_extra,
) -> dict:
    """One scatter line per (name, values, extra trace properties)."""
    data = []
    for label, ys, extra in series:
        data.append({"type": "scatter", "mode": "lines", "name": label, "x": x, "y": ys, **extra})
    xaxis = {
        **({"rangeslider": {"visible": True, "thickness": 0.08}} if rangeslider else {}),
        **layout_extra.pop("xaxis", {}),
    }
    layout = base_layout(
        theme,
        title={"text": title},
        yaxis={"title": {"text": yaxis_title}, "rangemode": "tozero"},
        xaxis=xaxis,
        hovermode="x unified",
        **layout_extra,
    )
    if uirevision:
        layout["uirevision"] = uirevision
    return {"data": data, "layout": layout, "frames": []}
