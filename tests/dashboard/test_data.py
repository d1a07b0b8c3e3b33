"""The dashboard's data side against a real SQLite sink: the live feed (incremental refresh, paused stream, today's
total beyond the in-memory hour), the shared cache, and the package search over 800,000 names."""

from __future__ import annotations

import threading

from dashboard_testing import NEWEST

from pypi_pulse.dashboard.cache import PeriodCache
from pypi_pulse.dashboard.live_feed import HORIZON_S, LiveFeed
from pypi_pulse.dashboard.packages import NameIndex
from pypi_pulse.dashboard.reader import NoData, SinkReader
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import WindowRow


class StepClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_live_feed_follows_the_stream_and_survives_a_pause(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    day_start = NEWEST - NEWEST % 86400
    n = HORIZON_S + 1500  # more than the in-memory hour, all in the same UTC day
    first = [WindowRow(day_start + i, 3 + i % 4, 2, {"US": 2 + i % 4, "DE": 1}, [("numpy", 2)]) for i in range(n)]
    writer = open_sink(url)
    writer.write(first, None)
    clock = StepClock()
    feed = LiveFeed(SinkReader(url))
    feed.cache.clock = clock
    c = feed.counters()
    assert c.newest == day_start + n - 1
    assert c.today == sum(w.downloads for w in first)
    assert c.last_minute == sum(w.downloads for w in first[-60:])
    assert len(feed.current().windows) == HORIZON_S

    # the stream moves on: 200 more windows, and a rewrite of a recent one (stragglers)
    more = [WindowRow(day_start + n + i, 10, 5, {"FR": 10}, [("torch", 10)]) for i in range(200)]
    rewritten = WindowRow(day_start + n - 5, 100, 2, {"US": 100}, [("numpy", 100)])
    writer.write(more + [rewritten], None)
    clock.t += 1.0
    c = feed.counters()
    everything = first[: n - 5] + [rewritten] + first[n - 4 :] + more
    assert c.newest == day_start + n + 199
    assert c.today == sum(w.downloads for w in everything)
    assert feed.countries(300)["FR"] == 200 * 10

    # the stream pauses: nothing new, the feed still answers with the latest data
    queries_before = feed.queries
    clock.t += 1.0
    assert feed.counters() == c
    assert feed.queries == queries_before + 1
    writer.close()


def test_live_feed_without_sink_says_no_data(tmp_path):
    feed = LiveFeed(SinkReader(f"sqlite:///{tmp_path / 'missing.db'}"))
    try:
        feed.counters()
    except NoData as exc:
        assert "pypi-pulse up" in str(exc)
    else:
        raise AssertionError("expected NoData")


def test_one_computation_per_period_for_many_viewers():
    clock = StepClock()
    cache = PeriodCache(1.0, clock=clock)
    gate = threading.Event()
    calls = []

    def slow():
        calls.append(1)
        gate.wait(5)
        return len(calls)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(50)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [1] * 50 and len(calls) == 1
    clock.t = 1.5
    assert cache.get("k", slow) == 2


def test_package_search_over_800k_names():
    names = [f"pkg-{i:x}-{'abcdefgh'[i % 8]}" for i in range(800_000)]
    names += ["numpy", "numpy-financial", "numpyro", "pandas", "types-numpy-stubs"]
    index = NameIndex(names)
    assert len(index) == 800_005
    found = index.search("NumPy")
    assert found[:3] == ["numpy", "numpyro", "numpy-financial"]
    assert "types-numpy-stubs" in index.search("numpy", limit=1000)
    assert index.search("numpy", limit=2) == ["numpy", "numpyro"]
    assert index.search("zzzzzzzzzzzzzz") == []
    assert index.search("  ") == []
    assert index.search("PKG_3039-b")[0] == "pkg-3039-b"
    assert set(index.search("3039-b", limit=50)) == {n for n in names if "3039-b" in n}
    assert all("-a" in n for n in index.search("-a", limit=500)) and len(index.search("-a", limit=500)) == 500


def test_many_live_viewers_cost_one_refresh_per_second(server):
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from dashboard_testing import fire_callback, signed_in

    feed = server.app.server.config["PYPI_PULSE_CONTEXT"].live
    first = signed_in(server.url)
    sessions = []
    for _ in range(20):  # 20 viewers of the same account, each with its own connection
        s = requests.Session()
        s.cookies.update(first.cookies)
        sessions.append(s)
    before = feed.refreshes
    with ThreadPoolExecutor(20) as pool:
        outs = list(
            pool.map(
                lambda s: fire_callback(
                    s, server.url, "live-treemap.figure", {"live-range.value": 300, "live-countries.value": []}
                ),
                sessions,
            )
        )
    assert len({o["live-last-minute"]["children"] for o in outs}) == 1
    assert feed.refreshes - before <= 2  # one refresh, two if the requests straddle a second boundary


def test_country_totals_match_a_plain_sum_while_the_stream_moves(tmp_path):
    """The per-minute shortcut of LiveFeed.countries against summing every window, with gaps and rewrites."""
    import random
    from collections import Counter

    url = f"sqlite:///{tmp_path / 's.db'}"
    rng = random.Random(3)
    base = NEWEST - 5000 + 37  # not aligned to a minute
    ws = [
        WindowRow(base + i, 1, 1, {c: rng.randint(1, 9) for c in rng.sample(["US", "DE", "FR", "JP", "GB"], 3)}, [])
        for i in range(5000)
        if rng.random() > 0.1
    ]
    writer = open_sink(url)
    writer.write(ws[:4000], None)
    stored = {w.start: w for w in ws[:4000]}
    clock = StepClock()
    feed = LiveFeed(SinkReader(url))
    feed.cache.clock = clock
    for step in range(4):
        st = feed.current()
        for seconds in (1, 7, 60, 61, 119, 300, 900, 3600):
            want = Counter()
            for w in stored.values():
                if st.newest - seconds < w.start <= st.newest:
                    want.update(w.countries)
            assert feed.countries(seconds) == dict(want), (step, seconds)
        fresh = ws[4000 + step * 200 : 4200 + step * 200] + [WindowRow(st.newest - 100, 1, 1, {"US": 1000}, [])]
        writer.write(fresh, None)
        stored.update({w.start: w for w in fresh})
        clock.t += 1.0
    writer.close()
