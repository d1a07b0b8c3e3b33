"""The dashboard reading a real PostgreSQL sink (production backend): the same known data gives the same charts."""

from __future__ import annotations

import uuid
from collections import Counter
from urllib.parse import quote

import psycopg
import pytest
import requests

from dashboard_testing import PASSWORD, USER, Server, daily_count, fill, fire_callback, window
from pypi_pulse.countries import alpha3
from pypi_pulse.dashboard.users import UserStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_sink(postgres_url):
    """The known data in a schema of its own, dropped afterwards."""
    name = f"pulse_dash_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options={quote(f'-csearch_path={name}')}"
    try:
        fill(url)
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


def test_live_and_history_from_postgres(pg_sink, tmp_path):
    UserStore(tmp_path).add(USER, PASSWORD)
    srv = Server(pg_sink, tmp_path)
    try:
        http = requests.Session()
        http.post(srv.url + "/login", data={"username": USER, "password": PASSWORD})
        live = fire_callback(http, srv.url, "live-treemap.figure", {"live-range.value": 300, "live-countries.value": []})
        assert live["live-last-minute"]["children"] == f"{sum(window(i).downloads for i in range(60)):,}"
        total = Counter()
        for i in range(300):
            total.update(window(i).countries)
        trace = live["live-map-downloads"]["figure"]["data"][0]
        assert dict(zip(trace["locations"], trace["customdata"])) == {alpha3(c): n for c, n in total.items() if c != "ZZ"}
        fig = fire_callback(http, srv.url, "trends-daily.figure", {"trends-packages.value": ["torch"],
                                                                  "trends-ma.value": []})["trends-daily"]["figure"]
        assert fig["data"][0]["y"] == [daily_count("torch", i) for i in range(len(fig["data"][0]["y"]))]
        assert len(fig["data"][0]["y"]) == 45
    finally:
        srv.stop()
