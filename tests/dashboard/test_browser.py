"""The dashboard in a real headless Chromium against the real server: sign in, every tab's charts show what is in
the sink, controls change the charts, sign out, and an anonymous browser is refused."""

from __future__ import annotations

from collections import Counter

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from dashboard_testing import (COUNTRY_SPLIT, N_DAYS, PACKAGES, PASSWORD, SCREENSHOTS, USER, day, daily_count,
                      rollup_counts, window)
from pypi_pulse.countries import alpha3
from pypi_pulse.categories import category_map

pytestmark = pytest.mark.browser

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
    assert sorted(zip(fig["data"][0]["customdata"], a, b)) == sorted((c, per["numpy"][c], per["requests"][c])
                                                                    for c in COUNTRY_SPLIT)
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
    assert next(t for t in fig["data"] if t["name"] == "matplotlib")["y"] == [daily_count("matplotlib", i) for i in range(N_DAYS)]


def test_dark_mode_switches_page_and_charts(server, browser):
    from pypi_pulse.dashboard.figures import THEMES

    sign_in(browser, server.url)
    open_tab(browser, "trends")
    wait_figure(browser, "trends-daily", lambda f: len(f["data"]) > 0)
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='Dark']").click()
    wait_until(browser, lambda: browser.driver.execute_script(
        "return document.documentElement.getAttribute('data-bs-theme')") == "dark", message="page did not turn dark")
    font = "return document.querySelector('#trends-daily .js-plotly-plot').layout.font.color"
    wait_until(browser, lambda: browser.driver.execute_script(font) == THEMES["dark"]["font"],
               message="chart did not follow the dark theme")
    screenshot(browser, "trends-dark.png")
    browser.driver.find_element(By.XPATH, "//label[normalize-space()='Dark']").click()
    wait_until(browser, lambda: browser.driver.execute_script(font) == THEMES["light"]["font"],
               message="chart did not return to the light theme")


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
