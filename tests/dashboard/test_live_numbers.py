"""The numbers of the Live tab, the live API and the exporter against truth counted from the events: downloads
today (one definition, exact where rollups end and windows go on), gaps in the rate chart, the top 10 of the last
minute with what each figure proves, and the Package trends tab's default packages (the week's top). Through the
real dashboard server and its callbacks, the real API and the real exporter."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter

import pytest
from dashboard_testing import Server, fire_callback, signed_in
from live_numbers_testing import BLOCK, DAY0, scenario

from pypi_pulse.metrics.sink_collector import build_registry
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket, WindowRow

LIVE = {"live-range.value": 300, "live-countries.value": []}


@pytest.fixture
def serve(data_dir):
    servers = []

    def start(url):
        servers.append(Server(url, data_dir))
        return servers[-1], signed_in(servers[-1].url)

    yield start
    for s in servers:
        s.stop()


def _sink(data_dir, name: str) -> str:
    """A fresh sink in a directory of its own: its history lives beside it (DIR/history), and no other test's."""
    folder = data_dir / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return f"sqlite:///{folder / f'{name}.db'}"


def _metric(url: str, name: str, labels=None):
    registry, collector = build_registry(url, cache_s=0)
    try:
        return registry.get_sample_value(name, labels or {})
    finally:
        collector.close()


def test_card_summary_and_metric_say_the_same_downloads_today(serve, data_dir):
    url = _sink(data_dir, "today")
    sc = scenario(11, DAY0, 35 * 60)
    with open_sink(url) as db:  # 00:00-00:20 applied to the rollups, the rest only in windows
        db.write_buckets([sc.block(DAY0), sc.block(DAY0 + BLOCK)])
        db.write(sc.windows(), None)
    truth = sc.total(DAY0, DAY0 + 35 * 60)
    srv, http = serve(url)
    card = fire_callback(http, srv.url, "live-treemap.figure", LIVE)["live-today"]["children"]
    summary = http.get(srv.url + "/api/live/summary").json()
    assert card == f"{truth:,}"
    assert summary["today"]["downloads"] == truth and summary["today"]["day"] == "2026-11-21"
    assert summary["today"]["from_rollups"] == sc.total(DAY0, DAY0 + 2 * BLOCK)
    assert _metric(url, "pypi_pulse_downloads_today") == truth


def test_the_rate_chart_leaves_a_gap_where_nothing_was_measured(serve, data_dir):
    url = _sink(data_dir, "gaps")
    newest = DAY0 + 3600
    # 300 s shown: nothing in the first 100 s, then windows with a 3 s quiet spell and a 30 s outage
    present = [
        s
        for s in range(newest - 199, newest + 1)
        if not (newest - 150 <= s < newest - 147) and not (newest - 100 <= s < newest - 70)
    ]
    with open_sink(url) as db:
        db.write([WindowRow(s, 5, 1, {"US": 5}, [("a", 5)]) for s in present], None)
    srv, http = serve(url)
    out = fire_callback(http, srv.url, "live-rate-chart.figure", {**LIVE, "live-countries.value": ["US"]})
    for trace in out["live-rate-chart"]["figure"]["data"]:
        y = trace["y"]
        assert len(y) == 300
        got = {newest - 299 + i: v for i, v in enumerate(y)}
        assert all(got[s] is None for s in range(newest - 299, newest - 199))  # before the first window
        assert all(got[s] is None for s in range(newest - 100, newest - 70))  # 30 s without a window
        assert all(got[s] == 0 for s in range(newest - 150, newest - 147))  # a quiet spell inside the stream
        assert all(got[s] == 5 for s in present)
        assert trace["connectgaps"] is False


@pytest.mark.parametrize("projects, per_second, must_be_exact", [(400, (40, 200), False), (8, (1, 30), True)])
def test_the_last_minute_top_10_holds_the_truth(serve, data_dir, projects, per_second, must_be_exact):
    url = _sink(data_dir, f"top{projects}")
    sc = scenario(12, DAY0, 150, projects=projects, per_second=per_second)
    newest = max(sc.events)
    with open_sink(url) as db:
        db.write(sc.windows(), None)
    truth = sc.per_project(newest - 59, newest + 1)
    true_top = sorted(truth.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    srv, http = serve(url)
    top = http.get(srv.url + "/api/live/top?window=60").json()
    assert top["downloads"] == sum(truth.values()) and top["windows"] == 60
    listed = {e["project"] for e in top["data"]}
    assert len(top["data"]) == min(10, len(truth))
    for e in top["data"]:
        assert e["downloads"] <= truth[e["project"]] <= e["downloads_max"], e
        assert e["exact"] == (e["downloads"] == e["downloads_max"])
        if e["exact"]:
            assert e["downloads"] == truth[e["project"]]
    assert all(n <= top["others_max"] for p, n in truth.items() if p not in listed)
    if top["exact"]:
        assert [(e["project"], e["downloads"]) for e in top["data"]] == true_top
    assert top["exact"] is True if must_be_exact else not top["exact"]  # each case proves what it is there for
    # the exporter and the Live tab's minute treemap show the same figures
    for e in top["data"]:
        assert _metric(url, "pypi_pulse_top_package_downloads_last_minute", {"project": e["project"]}) == e["downloads"]
        assert (
            _metric(url, "pypi_pulse_top_package_downloads_last_minute_max", {"project": e["project"]})
            == e["downloads_max"]
        )
    assert _metric(url, "pypi_pulse_top_packages_last_minute_exact") == (1 if top["exact"] else 0)
    tree = fire_callback(http, srv.url, "live-treemap-minute.figure", {})["live-treemap-minute"]["figure"]
    assert dict(zip(tree["data"][0]["labels"], tree["data"][0]["values"])) == {
        e["project"]: e["downloads"] for e in top["data"]
    }
    assert ("exact" in tree["layout"]["title"]["text"]) == top["exact"]
    assert ("at least" in tree["layout"]["title"]["text"]) != top["exact"]


def test_live_top_rejects_bad_parameters_with_json_400(serve, data_dir):
    url = _sink(data_dir, "top-bad")
    with open_sink(url) as db:
        db.write([WindowRow(DAY0, 1, 1, {"US": 1}, [("a", 1)])], None)
    srv, http = serve(url)
    for q in ("window=0", "window=-1", "window=abc", "window=999999", "limit=11", "limit=0", "window=%00"):
        r = http.get(srv.url + "/api/live/top?" + q)
        assert r.status_code == 400 and "must be" in r.json()["error"], q
    assert http.get(srv.url + "/api/live/top").json()["window"] == 60


def test_default_packages_are_the_weeks_top_not_the_newest_seconds(serve, data_dir):
    url = _sink(data_dir, "week")
    first = dt.date(2026, 11, 10)
    daily = Counter()
    buckets = []
    for i in range(12):  # 2026-11-10 .. 2026-11-20 complete, then today (2026-11-21) in progress
        d = (first + dt.timedelta(days=i)).isoformat()
        counts = {"old-giant": 100_000 if i < 3 else 10, "steady": 5_000, "rising": 1_000 * i, "noise": 3_000 + i}
        if i == 11:
            counts = {"today-burst": 90_000}  # the partial day does not choose the defaults
        c = {}
        for p, n in counts.items():
            c[(d, p, "overall", None)] = n
            c[(d, p, "with_mirrors", None)] = n
            if 4 <= i <= 10:  # the last 7 complete days
                daily[p] += n
        buckets.append(RollupBucket(int(dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC).timestamp()), c))
    with open_sink(url) as db:
        # today's windows (after the rollups so far) make today partial; the newest second's top is "flicker"
        db.write_buckets(buckets)
        db.write([WindowRow(DAY0 + 300 + k, 9, 1, {"US": 9}, [("flicker", 9)]) for k in range(5)], None)
    truth = [p for p, _ in sorted(daily.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]
    assert truth == ["rising", "steady"]  # not the 11 days' top (old-giant), the newest second's or today's
    srv, http = serve(url)
    content = fire_callback(http, srv.url, "tab-content.children", {"tabs.active_tab": "trends"})
    dropdown = _find(content["tab-content"]["children"], "trends-packages")
    assert dropdown["props"]["value"] == truth
    fig = fire_callback(
        http,
        srv.url,
        "trends-daily.figure",
        {"trends-packages.value": ["steady"], "trends-ma.value": [], "theme.data": "light"},
    )["trends-daily"]["figure"]
    names = [t["name"] for t in fig["data"]]
    assert names == ["steady", "steady · today so far"]
    solid, dashed = fig["data"]
    assert solid["y"][-1] is None and solid["y"][-2] == 5_000  # today is not drawn as a complete day
    assert dashed["y"][-2:] == [5_000, 0] and dashed["line"]["dash"] == "dash"
    assert "today so far" in fig["layout"]["title"]["text"]


def _find(node, cid):
    if isinstance(node, dict):
        if node.get("props", {}).get("id") == cid:
            return node
        node = node.get("props", {}).get("children")
    if isinstance(node, list):
        for n in node:
            found = _find(n, cid)
            if found:
                return found
    elif isinstance(node, dict):
        return _find(node, cid)
    return None
