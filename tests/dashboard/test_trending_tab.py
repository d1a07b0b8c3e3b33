"""The Trending tab through the real dashboard server: known history and recent blocks written with the real Sink
API, the tab's callback fired as the page fires it, and its chart and table checked against figures computed here."""

from __future__ import annotations

import datetime as dt

import pytest
from dashboard_testing import SCREENSHOTS, Server, browser, data_dir, fire_callback, signed_in  # noqa: F401  (fixtures)

from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.recent import record_blocks, record_day_profile

HOUR = 3600
NOW_HOUR = int(dt.datetime(2026, 11, 18, 9, tzinfo=dt.UTC).timestamp())  # a Wednesday, 09:00-10:00
WEEKS = [NOW_HOUR - NOW_HOUR % 86400 - 7 * k * 86400 for k in (1, 2, 3, 4)]
USUAL = {"numpy": 2400, "requests": 4800, "left-pad": 480}  # downloads on each of the past Wednesdays
NOW = {"numpy": 1200, "requests": 240, "left-pad": 40, "fresh": 300}  # downloads between 09:00 and 10:00 today


def _day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()


def _profile(day: int) -> list[tuple[int, int]]:
    """A past day's all-project downloads by block: 100 a block between 09:00 and 10:00, 50 in every other."""
    ends = [day + 600 * (i + 1) for i in range(144)]
    return [(e, 100 if day + 9 * HOUR < e <= day + 10 * HOUR else 50) for e in ends]


NINE_SHARE = 600 / (600 + 138 * 50)  # of each past day's downloads, the share made between 09:00 and 10:00


def _fill(url: str) -> None:
    with open_sink(url) as db:
        for day in WEEKS:
            rows = [(p, d, None, n) for p, n in USUAL.items() for d in ("overall", "with_mirrors")]
            db.backfill_day(_day(day), rows, "test")
            record_day_profile(db, _profile(day))
        # today's blocks up to 10:00: the hour before is quiet, 09:00-10:00 holds NOW
        record_blocks(db, [(NOW_HOUR - 600 * k, 0, {"numpy": 5}) for k in range(6)])
        record_blocks(
            db,
            [
                (NOW_HOUR + 600 * (k + 1), 0, {p: n // 6 + (n % 6 if k == 5 else 0) for p, n in NOW.items()})
                for k in range(6)
            ],
        )


def _want() -> list[tuple[str, int, float, float]]:
    """(project, downloads, usual level, ratio), best first: each past Wednesday's downloads times its 09:00 share."""
    usual = {p: sum(USUAL[p] * NINE_SHARE for _ in WEEKS) / len(WEEKS) for p in USUAL}
    rows = [(p, n, usual.get(p, 0.0), n / max(usual.get(p, 0.0), 1.0)) for p, n in NOW.items() if n >= 100]
    return sorted(rows, key=lambda r: (-r[3], -r[1], r[0]))


@pytest.fixture(scope="module")
def trending_server(data_dir, tmp_path_factory):  # noqa: F811
    url = f"sqlite:///{tmp_path_factory.mktemp('trending-tab') / 's.db'}"
    _fill(url)
    s = Server(url, data_dir)
    yield s
    s.stop()


def test_both_backends_give_the_same_trending_figures(sink_url):
    from pypi_pulse.sink.trending import TrendingOptions

    _fill(sink_url)
    with open_sink(sink_url, readonly=True) as db:
        t = TrendingOptions().compute(db, 1)
    assert (t.start, t.end) == (NOW_HOUR, NOW_HOUR + HOUR)
    assert [(r["project"], r["downloads"]) for r in t.rows] == [(p, n) for p, n, _, _ in _want()]
    assert [r["baseline"] for r in t.rows] == pytest.approx([b for _, _, b, _ in _want()], abs=0.01)
    assert [r["ratio"] for r in t.rows] == pytest.approx([r for _, _, _, r in _want()], abs=0.01)


def test_the_tab_ranks_the_surge_with_its_figures(trending_server):
    base = trending_server.url
    http = signed_in(base)
    out = fire_callback(
        http,
        base,
        "trending-chart",
        {"trending-window.value": 1, "theme.data": "light", "trending-refresh.n_intervals": 0},
    )
    want = _want()
    bars = out["trending-chart"]["figure"]["data"][0]
    assert list(reversed(bars["y"])) == [p for p, _, _, _ in want] == ["fresh", "numpy", "requests"]
    assert list(reversed(bars["x"])) == pytest.approx([r for _, _, _, r in want], abs=0.01)
    assert list(reversed(bars["customdata"])) == [[n, pytest.approx(u, abs=0.01)] for _, n, u, _ in want]
    caption = out["trending-caption"]["children"]
    assert "2026-11-18T09:00:00Z → 2026-11-18T10:00:00Z" in caption and "4 weeks" in caption
    table = str(out["trending-table"]["children"])
    assert "fresh" in table and "left-pad" not in table  # 40 downloads: under the minimum


def test_the_tab_says_what_it_waits_for_on_a_sink_without_blocks(data_dir, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_sink(url).close()
    s = Server(url, data_dir)
    try:
        out = fire_callback(
            signed_in(s.url),
            s.url,
            "trending-chart",
            {"trending-window.value": 1, "theme.data": "light", "trending-refresh.n_intervals": 0},
        )
        assert "sealed blocks" in out["trending-caption"]["children"]
        assert (
            out["trending-chart"]["figure"]["data"] == [] or "annotations" in out["trending-chart"]["figure"]["layout"]
        )
    finally:
        s.stop()


@pytest.mark.browser
def test_the_tab_in_a_browser_shows_the_surge_first(trending_server, browser):  # noqa: F811
    from test_browser import open_tab, sign_in, wait_figure

    sign_in(browser, trending_server.url)
    open_tab(browser, "trending")
    fig = wait_figure(browser, "trending-chart", lambda f: bool(f["data"]) and f["data"][0]["type"] == "bar")
    want = _want()
    assert fig["data"][0]["y"][::-1] == [p for p, _, _, _ in want]
    assert fig["data"][0]["x"][::-1] == pytest.approx([r for _, _, _, r in want], abs=0.01)
    rows = browser.driver.find_elements("css selector", "#trending-rows tbody tr")
    assert [r.text.split()[0] for r in rows] == [p for p, _, _, _ in want]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.driver.save_screenshot(str(SCREENSHOTS / "trending.png"))
