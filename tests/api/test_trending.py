"""Trending now, end to end: four weeks of known history and one known surge go through the real broker, dataflow
(live configuration: recovery on, sealed blocks handed to the block writer) and SQLite sink, and `pypi-pulse
serve` answers `GET /api/trending` with the figures computed here from the events alone."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests
from pulse_testing import publish, run_flow

from pypi_pulse import command_lines
from pypi_pulse.broker import ensure_topics, free_port

HOUR = 3600
# the surge hour: Wednesday 2026-03-25, 14:00-15:00 UTC; the history: the four Wednesdays before it
SURGE = int(datetime(2026, 3, 25, 14, tzinfo=UTC).timestamp())
HISTORY_DAYS = [SURGE - SURGE % 86400 - 7 * k * 86400 for k in (1, 2, 3, 4)]
MIN_DOWNLOADS = 100  # the setting's default


def _event(project: str, ts: float, installer: str = "pip") -> dict:
    return {
        "timestamp": ts,
        "country_code": "US",
        "project": project,
        "file": {"project": project, "version": "1.0", "type": "bdist_wheel"},
        "details": {
            "installer": {"name": installer, "version": "1"},
            "python": "3.12.1",
            "system": {"name": "Linux"},
            "cpu": "x86_64",
            "ci": None,
        },
    }


def _spread(rng, project: str, n: int, start: float, span: float) -> list[dict]:
    return [_event(project, start + rng.random() * span) for _ in range(n)]


def _history_and_surge(rng) -> list[dict]:
    events = []
    # each past Wednesday: busier afternoons, so the hour-of-day profile matters
    for day in HISTORY_DAYS:
        for hour in range(24):
            t = day + hour * HOUR
            busy = 2 if 12 <= hour < 18 else 1
            events += _spread(rng, "steady", 60 * busy + rng.randrange(5), t, HOUR)
            events += _spread(rng, "surger", 12 * busy + rng.randrange(3), t, HOUR)
            events += _spread(rng, "background", 60 * busy, t, HOUR)
    day = SURGE - SURGE % 86400
    for hour in range(14):  # the surge day up to the surge hour, as usual
        t = day + hour * HOUR
        events += _spread(rng, "steady", 61, t, HOUR) + _spread(rng, "surger", 12, t, HOUR)
        events += _spread(rng, "background", 60, t, HOUR)
    events += _spread(rng, "steady", 124, SURGE, HOUR)  # its usual afternoon level
    events += _spread(rng, "surger", 400, SURGE, HOUR)  # ~17x its usual level
    events += _spread(rng, "brand-new", 150, SURGE, HOUR)  # no history at all
    events += _spread(rng, "tiny-jump", 40, SURGE, HOUR)  # below the minimum: never listed
    events += [_event("surger", SURGE + 120 + i, installer="bandersnatch") for i in range(30)]  # mirrors: not counted
    events += _spread(rng, "background", 120, SURGE, HOUR - 1)
    events.append(_event("background", SURGE + HOUR - 0.5))  # the hour's last block is there: the hour is whole
    rng.shuffle(events)
    return events


def _expected(events: list[dict]) -> dict:
    """Downloads in the surge hour and the usual level, from the events: per past Wednesday, the project's day
    times the share of that day's downloads made between 14:00 and 15:00, averaged over the four."""
    counted = [e for e in events if e["details"]["installer"]["name"] != "bandersnatch"]
    hour_now = Counter(e["project"] for e in counted if SURGE <= e["timestamp"] < SURGE + HOUR)
    baseline: Counter = Counter()
    for day in HISTORY_DAYS:
        on_day = [e for e in counted if day <= e["timestamp"] < day + 86400]
        start = day + 14 * HOUR
        share = sum(start <= e["timestamp"] < start + HOUR for e in on_day) / len(on_day)
        for p, n in Counter(e["project"] for e in on_day).items():
            baseline[p] += n * share / len(HISTORY_DAYS)
    rows = [
        {"project": p, "downloads": n, "baseline": round(baseline[p], 2), "ratio": round(n / max(baseline[p], 1.0), 2)}
        for p, n in hour_now.items()
        if n >= MIN_DOWNLOADS
    ]
    return {
        "window": "1h",
        "start": "2026-03-25T14:00:00Z",
        "end": "2026-03-25T15:00:00Z",
        "data": sorted(rows, key=lambda r: (-r["ratio"], -r["downloads"], r["project"])),
    }


@pytest.fixture(scope="module")
def served(broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trending")
    events = _history_and_surge(random.Random(7))
    topic = "trending-history"
    ensure_topics(broker.bootstrap, {topic: 4, topic + "-dlq": 1})
    url = f"sqlite:///{tmp / 'sink.db'}"
    run_flow(
        broker.bootstrap,
        topic,
        url,
        end_offsets=publish(broker.bootstrap, topic, events, pack=500),
        recovery_dir=tmp / "recovery",
        lateness_s=60.0,
    )
    port = free_port()
    proc = subprocess.Popen(
        command_lines.serve(port, url, tmp / "serve", "--public-api"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(base + "/api/openapi.json", timeout=2)
            break
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "serve did not start listening in 60 s"
            time.sleep(0.1)  # polling interval while the server starts
    yield base, events, url
    proc.terminate()
    proc.wait(10)


def test_a_known_surge_tops_trending_with_exact_downloads_baseline_and_ratio(served):
    base, events, _url = served
    r = requests.get(base + "/api/trending?window=1h", timeout=10)
    assert r.status_code == 200, r.text
    got = r.json()
    want = _expected(events)
    assert [row["project"] for row in got["data"]] == [row["project"] for row in want["data"]]
    assert got == want
    assert got["data"][0]["project"] == "brand-new" and got["data"][1]["project"] == "surger"
    assert (
        got["data"][1]["ratio"] > 10 and 0.7 < next(r for r in got["data"] if r["project"] == "steady")["ratio"] < 1.5
    )


def test_a_longer_window_sums_its_hours(served):
    base, events, _url = served
    got = requests.get(base + "/api/trending?window=3h", timeout=10).json()
    assert (got["window"], got["start"], got["end"]) == ("3h", "2026-03-25T12:00:00Z", "2026-03-25T15:00:00Z")
    mirrors = {"bandersnatch"}
    truth = Counter(
        e["project"]
        for e in events
        if SURGE - 2 * HOUR <= e["timestamp"] < SURGE + HOUR and e["details"]["installer"]["name"] not in mirrors
    )
    assert {r["project"]: r["downloads"] for r in got["data"]} == {
        p: n for p, n in truth.items() if n >= 3 * MIN_DOWNLOADS
    }


@pytest.mark.parametrize(
    "query",
    [
        "window=0h",
        "window=7h",
        "window=25h",
        "window=1d",
        "window=",
        "window=h",
        "window=1h&limit=0",
        "window=1h&limit=abc",
        "window=-1h",
    ],
)
def test_a_bad_window_or_limit_is_a_400_with_a_json_error(served, query):
    base, _, _url = served
    r = requests.get(f"{base}/api/trending?{query}", timeout=10)
    assert r.status_code == 400, (query, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]


def test_the_exporter_publishes_the_top_ratios_of_the_last_hour(served):
    from pypi_pulse.metrics.sink_collector import build_registry

    _base, events, url = served
    want = _expected(events)["data"][:10]
    registry, collector = build_registry(url, cache_s=0)
    try:
        got = {
            s.labels["project"]: s.value
            for m in registry.collect()
            if m.name == "pypi_pulse_trending_ratio"
            for s in m.samples
        }
        assert got == {r["project"]: r["ratio"] for r in want}
        assert registry.get_sample_value("pypi_pulse_trending_downloads", {"project": "surger"}) == 400
        assert registry.get_sample_value("pypi_pulse_trending_window_end_timestamp_seconds") == SURGE + HOUR
    finally:
        collector.close()


def test_trending_on_an_empty_sink_says_so(tmp_path):
    from pypi_pulse.dashboard.trending import trending_json
    from pypi_pulse.sink.base import open_sink
    from pypi_pulse.sink.trending import TrendingOptions

    with open_sink(f"sqlite:///{tmp_path / 'empty.db'}") as db:
        assert trending_json(TrendingOptions(), db, 1, 20) == {"window": "1h", "start": None, "end": None, "data": []}
