"""The Daily pattern tab through the real server: per-second windows spread over a day, 10-minute block totals and
daily totals written with the real Sink API; the callbacks fired as the page fires them and their figures checked
against sums computed here from what was written."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from dashboard_testing import Server, data_dir, fire_callback, signed_in  # noqa: F401  (fixtures)

from pypi_pulse.countries import name
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import WindowRow
from pypi_pulse.sink.recent import record_day_profile

DAY0 = int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp())  # a Monday
NEWEST = DAY0 + 28 * 86400 + 13 * 3600 + 1799  # 13:29:59 on the day after the 4 weeks of history
PEAKS = {"US": 15, "DE": 9, "JP": 2, "BR": 18}  # the UTC hour each country downloads most


def _window(t: int) -> WindowRow:
    """Two windows a minute (at :00 and :30 s) over the last 26 hours; each country busiest at its peak hour."""
    h = (t // 3600) % 24
    cs = {cc: 1 + 10 * (1 if h == peak else 0) + (t // 60) % 3 for cc, peak in PEAKS.items()}
    if (t // 60) % 7 == 0:
        cs["ZZ"] = 2
    return WindowRow(t, sum(cs.values()), 1, cs, [("numpy", 1)])


WINDOW_STARTS = [t for t in range(NEWEST - 26 * 3600, NEWEST + 1) if t % 30 == 29]


def _day_total(i: int) -> int:
    return 10_000 - (4_000 if (i % 7) in (5, 6) else 0) + 13 * i  # weekends dip


def _blocks(i: int) -> list[tuple[int, int]]:
    day = DAY0 + i * 86400
    return [(day + 600 * (k + 1), 10 + (k // 6) * 3 + i) for k in range(144)]  # grows by hour of day


@pytest.fixture(scope="module")
def daily_server(data_dir, tmp_path_factory):  # noqa: F811
    url = f"sqlite:///{tmp_path_factory.mktemp('daily-tab') / 's.db'}"
    with open_sink(url) as db:
        db.write([_window(t) for t in WINDOW_STARTS], None)
        for i in range(28):
            d = dt.date.fromtimestamp(DAY0 + i * 86400).isoformat()
            db.backfill_day(
                d, [("numpy", "overall", None, _day_total(i)), ("numpy", "with_mirrors", None, _day_total(i))], "test"
            )
            record_day_profile(db, _blocks(i))
    s = Server(url, data_dir)
    yield s
    s.stop()


def test_country_by_hour_of_the_last_24_hours(daily_server):
    base = daily_server.url
    out = fire_callback(signed_in(base), base, "daily-heatmap", {"theme.data": "dark"})
    trace = out["daily-heatmap"]["figure"]["data"][0]
    first = (NEWEST // 3600 - 23) * 3600
    downloads, seconds = Counter(), Counter()
    for t in WINDOW_STARTS:
        if t >= first:
            w = _window(t)
            seconds[(t // 3600) % 24] += 1
            for cc, n in w.countries.items():
                downloads[(cc, (t // 3600) % 24)] += n
    assert trace["x"] == [f"{h:02d}:00" for h in range(24)]
    ranked = sorted(PEAKS, key=lambda cc: (-sum(downloads[(cc, h)] for h in range(24)), cc))
    assert trace["y"] == [name(cc) for cc in reversed(ranked)]  # ZZ (unknown) is not a row
    for row, cc in zip(trace["customdata"], reversed(ranked)):
        assert [cell[0] for cell in row] == [downloads[(cc, h)] for h in range(24)]
        rates = [downloads[(cc, h)] / seconds[h] for h in range(24)]
        assert [cell[1] for cell in row] == pytest.approx(rates)
    for z, cc in zip(trace["z"], reversed(ranked)):
        assert max(range(24), key=lambda h: z[h]) == PEAKS[cc]  # each country's busiest hour stands out
        assert max(z) == pytest.approx(100)


def test_hour_profile_and_weekly_dip_over_whole_weeks(daily_server):
    base = daily_server.url
    out = fire_callback(signed_in(base), base, "daily-weekdays", {"daily-weeks.value": 4, "theme.data": "light"})
    hours = out["daily-hours"]["figure"]["data"][0]
    per_hour = Counter()
    for i in range(28):
        for end, n in _blocks(i):
            per_hour[((end - 1) % 86400) // 3600] += n
    total = sum(per_hour.values())
    assert hours["customdata"] == [per_hour[h] for h in range(24)]
    assert hours["y"] == pytest.approx([100 * per_hour[h] / total for h in range(24)])
    days = out["daily-weekdays"]["figure"]["data"][0]
    want = [sum(_day_total(i) for i in range(28) if i % 7 == wd) / 4 for wd in range(7)]  # DAY0 is a Monday
    assert days["x"][0] == "Monday" and days["y"] == pytest.approx(want)
    assert days["customdata"] == [4] * 7
    assert min(range(7), key=lambda k: days["y"][k]) in (5, 6)  # the weekend dip
    assert "2026-11-02 → 2026-11-29" in out["daily-caption"]["children"]


def test_the_tab_says_what_it_waits_for_on_an_empty_sink(data_dir, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_sink(url).close()
    s = Server(url, data_dir)
    try:
        http = signed_in(s.url)
        out = fire_callback(http, s.url, "daily-heatmap", {"theme.data": "light"})
        assert "per-second windows" in str(out["daily-heatmap"]["figure"]["layout"]["annotations"])
        out = fire_callback(http, s.url, "daily-weekdays", {"daily-weeks.value": "bogus", "theme.data": None})
        assert "daily history" in str(out["daily-weekdays"]["figure"]["layout"]["annotations"])
    finally:
        s.stop()
