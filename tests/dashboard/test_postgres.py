"""The dashboard reading a real PostgreSQL sink (production backend): the same known data gives the same charts."""

from __future__ import annotations

from collections import Counter

import pytest
from dashboard_testing import PASSWORD, USER, Server, daily_count, fill, fire_callback, signed_in, window
from pulse_testing import postgres_schema

from pypi_pulse.countries import alpha3
from pypi_pulse.dashboard.users import UserStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_sink(postgres_url, tmp_path):
    """The known data in a schema of its own, dropped afterwards, with its history in tmp_path/history."""
    with postgres_schema(postgres_url, "pulse_dash") as url:
        fill(url, tmp_path / "history")
        yield url


def test_live_and_history_from_postgres(pg_sink, tmp_path):
    UserStore(tmp_path).add(USER, PASSWORD)
    srv = Server(pg_sink, tmp_path, history=str(tmp_path / "history"))
    try:
        http = signed_in(srv.url)
        live = fire_callback(
            http, srv.url, "live-treemap.figure", {"live-range.value": 300, "live-countries.value": []}
        )
        assert live["live-last-minute"]["children"] == f"{sum(window(i).downloads for i in range(60)):,}"
        total = Counter()
        for i in range(300):
            total.update(window(i).countries)
        trace = live["live-map-downloads"]["figure"]["data"][0]
        assert dict(zip(trace["locations"], trace["customdata"])) == {
            alpha3(c): n for c, n in total.items() if c != "ZZ"
        }
        fig = fire_callback(
            http, srv.url, "trends-daily.figure", {"trends-packages.value": ["torch"], "trends-ma.value": []}
        )["trends-daily"]["figure"]
        assert fig["data"][0]["y"] == [daily_count("torch", i) for i in range(len(fig["data"][0]["y"]))]
        assert len(fig["data"][0]["y"]) == 45
    finally:
        srv.stop()
