"""The dashboard in a real headless Chromium against the real server: sign in, every tab's charts show what is in
the sink, controls change the charts, sign out, and an anonymous browser is refused."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from dashboard_testing import (
    COUNTRY_SPLIT,
    N_DAYS,
    PACKAGES,
    PASSWORD,
    SCREENSHOTS,
    USER,
    daily_count,
    day,
    day_blocks,
    rollup_counts,
    window,
)
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from pypi_pulse.categories import category_map
from pypi_pulse.countries import alpha3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from web_faults_testing import Serve  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(filled_sink, data_dir):
    """`pypi-pulse serve` itself, as users run it (gunicorn where installed: several worker processes), rather than
    the app in a thread of the test."""
    s = Serve(data_dir, filled_sink)
    yield s
    s.stop()


FIGURE_JS = """
const gd = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!gd || !gd.data || !gd.layout) return null;
return JSON.parse(JSON.stringify({data: gd.data, title: (gd.layout.title || {}).text || '',
                                  annotations: (gd.layout.annotations || []).map(a => a.text)}));
"""


def figure(browser, graph_id: str):
    return browser.driver.execute_script(FIGURE_JS, graph_id)


def wait_figure(browser, graph_id: str, ok, timeout: float = 20):
    """Poll the graph's rendered figure until `ok(figure)` holds; return that figure."""
    seen = {}

    def check(_driver):
        fig = figure(browser, graph_id)
        seen["last"] = fig
        return fig if fig is not None and ok(fig) else False

    try:
        return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(check)
    except Exception as exc:
        raise AssertionError(f"{graph_id} never matched; last figure: {str(seen.get('last'))[:1500]}") from exc


def wait_until(browser, condition, timeout: float = 20, message: str = ""):
    return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(lambda d: condition(), message)


def sign_in(browser, url: str, user: str = USER, password: str = PASSWORD) -> None:
    browser.driver.get(url + "/login")
    browser.wait_for_element("#username").send_keys(user)
    browser.find_element("#password").send_keys(password)
    browser.find_element("#login-submit").click()


def screenshot(browser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.driver.save_screenshot(str(SCREENSHOTS / name))


def open_tab(browser, tab: str) -> None:
    browser.wait_for_element(f"#tab-{tab}")
    browser.driver.find_element(By.CSS_SELECTOR, f"a[href='#'][id^='tab-{tab}'], #tab-{tab}").click()


# ---- expectations, from the same known rows the fixture wrote --------------------------------------------------
def expected_countries(seconds: int) -> dict[str, int]:
    total = Counter()
    for i in range(seconds):
        total.update(window(i).countries)
    return {alpha3(c): n for c, n in total.items() if c != "ZZ"}


def as_map(fig) -> dict:
    t = fig["data"][0]
    return dict(zip(t["locations"], t["customdata"]))


# ---- tests -----------------------------------------------------------------------------------------------------
def test_sign_in_required_then_live_tab(server, browser):
    browser.driver.get(server.url + "/")
    wait_until(browser, lambda: "/login" in browser.driver.current_url, message="anonymous visit not sent to /login")
    browser.wait_for_element("#login-form")

    sign_in(browser, server.url, password="wrong password")
    assert "Wrong user name or password" in browser.wait_for_element("#login-error").text

    sign_in(browser, server.url)
    browser.wait_for_text_to_equal("#signed-in-user", USER)

    # counters: the last 60 windows, the whole (single) day, the mean of the last 10 s, the newest window
    last_minute = sum(window(i).downloads for i in range(60))
    browser.wait_for_text_to_equal("#live-last-minute", f"{last_minute:,}")
    browser.wait_for_text_to_equal("#live-today", f"{sum(window(i).downloads for i in range(900)):,}")
    browser.wait_for_text_to_equal("#live-rate", f"{sum(window(i).downloads for i in range(10)) / 10:,.1f}/s")
    browser.wait_for_text_to_equal("#live-distinct", "3")
    browser.wait_for_contains_text("#live-state", "stream paused")  # the fixture's data is days old

    fig = wait_figure(browser, "live-map-downloads", lambda f: f["data"] and f["data"][0]["type"] == "choropleth")
    assert as_map(fig) == expected_countries(300)
    fig = wait_figure(browser, "live-map-rate", lambda f: f["data"] and f["data"][0]["type"] == "choropleth")
    assert as_map(fig) == pytest.approx({k: v / 60 for k, v in expected_countries(60).items()})

    fig = wait_figure(browser, "live-rate-chart", lambda f: len(f["data"]) == 1)
    assert fig["data"][0]["y"] == [window(i).downloads for i in reversed(range(300))]
    fig = wait_figure(browser, "live-treemap", lambda f: f["data"] and f["data"][0]["type"] == "treemap")
    assert list(zip(fig["data"][0]["labels"], fig["data"][0]["values"])) == [tuple(t) for t in window(0).top]
    screenshot(browser, "live.png")

    # change the range: 15 minutes of per-second rates, and a wider country map
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='15 min']").click()
    fig = wait_figure(browser, "live-rate-chart", lambda f: len(f["data"][0]["y"]) == 900)
    assert fig["data"][0]["y"] == [window(i).downloads for i in reversed(range(900))]
    assert "15 min" in fig["title"]
    fig = wait_figure(browser, "live-map-downloads", lambda f: "15 min" in f["title"])
    assert as_map(fig) == expected_countries(900)


def test_countries_tab(server, browser):
    open_tab(browser, "countries")
    first, last = day(N_DAYS - 30), day(N_DAYS - 1)  # the default period: the last 30 days with rollups
    fig = wait_figure(browser, "countries-map", lambda f: f["data"] and f["data"][0]["type"] == "choropleth")
    want = Counter()
    for i in range(N_DAYS - 30, N_DAYS):
        for (_d, _p, dim, cat), n in rollup_counts(i).items():
            if dim == "country":
                want[alpha3(cat)] += n
    assert as_map(fig) == dict(want)
    assert first in fig["title"] and last in fig["title"]

    def top5(cc):
        totals = Counter()
        for i in range(N_DAYS - 30, N_DAYS):
            for (_d, p, dim, cat), n in rollup_counts(i).items():
                if dim == "country" and cat == cc:
                    totals[p] += n
        return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

    fig = wait_figure(browser, "countries-top5", lambda f: "United States" in f["title"])
    assert list(zip(fig["data"][0]["y"], fig["data"][0]["x"]))[::-1] == top5("US")

    # clicking a country on the map (Plotly's own click event) shows that country's top 5
    browser.driver.execute_script("""
        const gd = document.querySelector('#countries-map .js-plotly-plot');
        const i = gd.data[0].locations.indexOf('DEU');
        gd.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: i, pointIndex: i, location: 'DEU',
                                           z: gd.data[0].z[i], data: gd.data[0], fullData: gd._fullData[0]}]});
    """)
    fig = wait_figure(browser, "countries-top5", lambda f: "Germany" in f["title"])
    assert list(zip(fig["data"][0]["y"], fig["data"][0]["x"]))[::-1] == top5("DE")

    fig = wait_figure(browser, "countries-scatter", lambda f: f["data"] and f["data"][0]["type"] == "scatter")
    a, b = fig["data"][0]["x"], fig["data"][0]["y"]
    per = {p: Counter() for p in ("numpy", "requests")}
    for i in range(N_DAYS - 30, N_DAYS):
        for (_d, p, dim, cat), n in rollup_counts(i).items():
            if dim == "country" and p in per:
                per[p][cat] += n
    assert sorted(zip(fig["data"][0]["customdata"], a, b)) == sorted(
        (c, per["numpy"][c], per["requests"][c]) for c in COUNTRY_SPLIT
    )
    screenshot(browser, "countries.png")


def test_trends_tab(server, browser):
    open_tab(browser, "trends")
    days = [day(i) for i in range(N_DAYS)]
    fig = wait_figure(browser, "trends-daily", lambda f: len(f["data"]) == 8)  # 2 packages x (daily + 3 averages)
    lines = {t["name"]: t for t in fig["data"]}
    assert lines["numpy"]["x"] == days
    assert lines["numpy"]["y"] == [daily_count("numpy", i) for i in range(N_DAYS)]
    assert lines["requests"]["y"] == [daily_count("requests", i) for i in range(N_DAYS)]
    ys = lines["numpy"]["y"]
    ma10 = lines["numpy · 10-day average"]["y"]
    assert ma10[:9] == [None] * 9 and ma10[9] == pytest.approx(sum(ys[:10]) / 10)

    # turning averages off removes their lines
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='20 days']").click()
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='30 days']").click()
    wait_figure(browser, "trends-daily", lambda f: len(f["data"]) == 4)

    fig = wait_figure(browser, "trends-breakdown", lambda f: "python version" in f["title"])
    by = {t["name"]: t["y"] for t in fig["data"]}
    assert by["3.12"] == [daily_count("numpy", i) * 2 // 3 for i in range(N_DAYS)]
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='CI share']").click()
    fig = wait_figure(browser, "trends-breakdown", lambda f: "CI" in f["title"])
    share = fig["data"][0]["y"]
    want = [100 * (daily_count("numpy", i) // 4 + i % 5) / daily_count("numpy", i) for i in range(N_DAYS)]
    assert share == pytest.approx(want)

    fig = wait_figure(browser, "trends-categories", lambda f: len(f["data"]) > 0)
    cmap = category_map()
    for t in fig["data"]:
        members = [p for p in PACKAGES if cmap.get(p) == t["name"]]
        assert t["y"] == [sum(daily_count(p, i) for p in members) for i in range(N_DAYS)]
    assert {t["name"] for t in fig["data"]} == {cmap[p] for p in PACKAGES}
    screenshot(browser, "trends.png")

    # the package picker searches on the server: type part of a name, pick it, and its line appears
    browser.find_element("#trends-packages").click()
    search = browser.wait_for_element("input.dash-dropdown-search")
    search.send_keys("matplo")
    option = "//label[contains(@class, 'dash-dropdown-option')][normalize-space()='matplotlib']"
    wait_until(browser, lambda: browser.driver.find_elements(By.XPATH, option), message="no search result for matplo")
    browser.driver.find_element(By.XPATH, option).click()
    search.send_keys(Keys.ESCAPE)
    fig = wait_figure(browser, "trends-daily", lambda f: any(t["name"] == "matplotlib" for t in f["data"]))
    assert next(t for t in fig["data"] if t["name"] == "matplotlib")["y"] == [
        daily_count("matplotlib", i) for i in range(N_DAYS)
    ]


def pick_option(browser, dropdown_id: str, typed: str, label: str) -> None:
    """Open a dropdown, type into its search box and click the option (retried while the list is redrawn)."""
    browser.find_element(f"#{dropdown_id}").click()

    def search_box():
        try:
            shown = [
                e
                for e in browser.driver.find_elements(By.CSS_SELECTOR, "input.dash-dropdown-search")
                if e.is_displayed()
            ]
        except StaleElementReferenceException:
            return False
        return shown[-1] if shown else False

    wait_until(browser, search_box, message=f"{dropdown_id} did not open")
    search_box().send_keys(typed)
    option = f"//label[contains(@class, 'dash-dropdown-option')][normalize-space()='{label}']"

    def pick():
        try:
            browser.driver.find_element(By.XPATH, option).click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait_until(browser, pick, message=f"no option {label} in {dropdown_id}")
    browser.driver.switch_to.active_element.send_keys(Keys.ESCAPE)


def test_categories_tab(server, browser):
    open_tab(browser, "categories")
    cmap = category_map()
    first = N_DAYS - 30  # the default period: the last 30 days with rollups
    fig = wait_figure(browser, "categories-share", lambda f: len(f["data"]) == len({cmap[p] for p in PACKAGES}))
    for t in fig["data"]:
        members = [p for p in PACKAGES if cmap[p] == t["name"]]
        want = [
            100 * sum(daily_count(p, i) for p in members) / sum(daily_count(p, i) for p in PACKAGES)
            for i in range(first, N_DAYS)
        ]
        assert t["y"] == pytest.approx(want)
    # the default country (GB) has no downloads here: pick Germany
    pick_option(browser, "categories-country", "Germany", "Germany (DE)")
    fig = wait_figure(browser, "categories-country-mix", lambda f: "Germany" in f["title"] and len(f["data"]) == 2)
    de, rest = Counter(), Counter()
    for i in range(first, N_DAYS):
        for (_d, p, dim, cc), n in rollup_counts(i).items():
            if dim == "country":
                (de if cc == "DE" else rest)[cmap[p]] += n
    got = dict(zip(fig["data"][0]["x"], zip(fig["data"][0]["y"], fig["data"][1]["y"])))
    assert got == {c: pytest.approx((100 * de[c] / sum(de.values()), 100 * rest[c] / sum(rest.values()))) for c in de}
    wait_figure(browser, "categories-top", lambda f: "No downloads of NLP" in str(f["annotations"]))  # none here
    pick_option(browser, "categories-category", "deep", "deep learning")
    fig = wait_figure(browser, "categories-top", lambda f: "deep learning" in f["title"] and bool(f["data"]))
    assert list(zip(fig["data"][0]["y"], fig["data"][0]["x"])) == [
        ("torch", sum(daily_count("torch", i) for i in range(first, N_DAYS)))
    ]
    screenshot(browser, "categories.png")


def test_daily_pattern_tab(server, browser):
    open_tab(browser, "daily")
    fig = wait_figure(browser, "daily-heatmap", lambda f: bool(f["data"]) and f["data"][0]["type"] == "heatmap")
    t = fig["data"][0]
    per = Counter()
    for i in range(900):
        w = window(i)
        for cc, n in w.countries.items():
            per[(cc, (w.start // 3600) % 24)] += n
    assert t["y"] == ["France", "Germany", "United States"]  # most downloads at the top; ZZ is not a country row
    us = t["customdata"][-1]
    assert [cell[0] for cell in us] == [per[("US", h)] for h in range(24)]
    fig = wait_figure(browser, "daily-hours", lambda f: bool(f["data"]))
    last = N_DAYS - 1  # the fixture's last day with rollups is complete (no watermark): the 4 weeks end there
    hours = Counter()
    for i in range(last - 27, last + 1):
        for end, n in day_blocks(i):
            hours[((end - 1) % 86400) // 3600] += n
    assert fig["data"][0]["customdata"] == [hours[h] for h in range(24)]
    fig = wait_figure(browser, "daily-weekdays", lambda f: bool(f["data"]))
    import datetime as dt

    by_weekday = Counter()
    for i in range(last - 27, last + 1):
        by_weekday[dt.date.fromisoformat(day(i)).weekday()] += sum(daily_count(p, i) for p in PACKAGES)
    assert fig["data"][0]["y"] == pytest.approx([by_weekday[k] / 4 for k in range(7)])
    screenshot(browser, "daily.png")


TABS = ("live", "countries", "daily", "trends", "categories", "trending")


def test_dark_mode_switches_page_charts_and_controls(server, browser):
    from pypi_pulse.dashboard.figures import THEMES

    sign_in(browser, server.url)
    open_tab(browser, "trends")
    wait_figure(browser, "trends-daily", lambda f: len(f["data"]) > 0)
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='Dark']").click()
    wait_until(
        browser,
        lambda: (
            browser.driver.execute_script("return document.documentElement.getAttribute('data-bs-theme')") == "dark"
        ),
        message="page did not turn dark",
    )
    font = "return document.querySelector('#trends-daily .js-plotly-plot').layout.font.color"
    wait_until(
        browser,
        lambda: browser.driver.execute_script(font) == THEMES["dark"]["font"],
        message="chart did not follow the dark theme",
    )
    # every control is readable: dark background, light text (the luminance of the computed colours)
    lum = """const c = getComputedStyle(arguments[0])[arguments[1]].match(/[0-9.]+/g).map(Number);
             return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;"""
    control = browser.driver.find_element(By.CSS_SELECTOR, "#trends-packages .dash-dropdown, #trends-packages")
    assert (
        browser.driver.execute_script(lum, control, "backgroundColor") < 0.3
        or browser.driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", control)
        == "rgba(0, 0, 0, 0)"
    )
    assert browser.driver.execute_script(lum, control, "color") > 0.6
    screenshot(browser, "trends-dark.png")
    for tab in TABS:
        if tab == "trends":
            continue
        open_tab(browser, tab)
        graph = {
            "live": "live-map-downloads",
            "countries": "countries-map",
            "daily": "daily-heatmap",
            "categories": "categories-share",
            "trending": "trending-chart",
        }[tab]
        wait_until(
            browser,
            lambda graph=graph: (
                browser.driver.execute_script(
                    f"const g = document.querySelector('#{graph} .js-plotly-plot'); return g && g.layout && g.layout.font && g.layout.font.color"
                )
                == THEMES["dark"]["font"]
            ),
            message=f"{tab} did not turn dark",
        )
        if tab in ("countries", "categories"):
            picker = browser.driver.find_element(By.CSS_SELECTOR, f"input#{tab}-dates")  # the start date's box
            assert browser.driver.execute_script(lum, picker, "color") > 0.6, f"{tab} date picker text is dark"
        screenshot(browser, f"{tab}-dark.png")
    open_tab(browser, "trends")
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='Dark']").click()
    wait_until(
        browser,
        lambda: browser.driver.execute_script(font) == THEMES["light"]["font"],
        message="chart did not return to the light theme",
    )


def test_sign_out_then_everything_refused(server, browser):
    browser.find_element("#logout").click()
    browser.wait_for_element("#login-form")
    browser.driver.get(server.url + "/")
    wait_until(browser, lambda: "/login" in browser.driver.current_url, message="signed-out visit not sent to /login")
    statuses = browser.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const body = JSON.stringify({output: 'live-today.children', outputs: {id: 'live-today', property: 'children'},
                                     inputs: [], changedPropIds: []});
        Promise.all([
            fetch('/_dash-update-component', {method: 'POST', headers: {'Content-Type': 'application/json'}, body}),
            fetch('/_dash-layout'), fetch('/_dash-dependencies'), fetch('/api/live/summary'),
        ]).then(rs => done(rs.map(r => r.status)), e => done(String(e)));
    """)
    assert statuses == [401, 401, 401, 401]
