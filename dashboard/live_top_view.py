"""The Live tab's top 10 of the last minute, beside the newest second's: the per-second treemap jumps with every
second (values of 7 to 16 at 1,000 downloads/s), a minute's ranking holds still long enough to read.

Its figures come from the windows the Live tab already holds, through `sink.live_top` (the one definition the API
and the exporter use too): each project's downloads proven by the per-second top 10s. Where a figure is only a
lower bound the chart says so, in the title and in each tile ("≥"), with the most it can be in the hover.
"""

from __future__ import annotations

from pypi_pulse.dashboard import figures
from pypi_pulse.dashboard.context import NO_DATA, DashContext
from pypi_pulse.dashboard.reader import NoData
from pypi_pulse.events import iso_second
from pypi_pulse.sink.live_top import LiveTop, top_of

MINUTE_S = 60


def minute_top(ctx: DashContext) -> LiveTop | None:
    try:
        st = ctx.live.current()
    except NoData:
        return None
    if st.newest is None:
        return None
    end = st.newest + 1
    return ctx.live.cache.get(("minute-top", st.newest), lambda: top_of(st.windows.values(), end - MINUTE_S, end))


def minute_treemap(ctx: DashContext, theme: str) -> dict:
    title = f"Top 10 packages, last {MINUTE_S} s"
    t = minute_top(ctx)
    if t is None:
        return figures.empty(NO_DATA, theme, title)
    span = f"{iso_second(t.start)[11:19]}–{iso_second(t.end)[11:19]} UTC"
    if t.exact:
        title = f"{title} ({span}), exact"
    else:
        title = f"{title} ({span}): at least, from each second's top 10"
    fig = figures.treemap([(e.project, e.downloads) for e in t.entries], t.downloads, theme, title)
    if fig["data"]:
        trace = fig["data"][0]
        trace["text"] = ["" if e.exact else "≥ " for e in t.entries]
        trace["customdata"] = [[e.downloads / t.downloads if t.downloads else 0, e.downloads_max] for e in t.entries]
        trace["texttemplate"] = "<b>%{label}</b><br>%{text}%{value:,}<br>%{customdata[0]:.1%}"
        trace["hovertemplate"] = (
            "%{label}: %{text}%{value:,} downloads (at most %{customdata[1]:,}), "
            "%{customdata[0]:.1%} of the minute<extra></extra>"
        )
    return fig
