"""Empty states say what to do: a dashboard started before any data exists, and a package nobody downloaded."""

from __future__ import annotations

from dashboard_testing import PASSWORD, USER, Server, fire_callback, signed_in

from pypi_pulse.dashboard.users import UserStore


def annotations(figure: dict) -> str:
    return " ".join(a["text"] for a in figure["layout"].get("annotations", []))


def test_before_any_data_every_tab_says_how_to_get_some(tmp_path):
    UserStore(tmp_path).add(USER, PASSWORD)
    srv = Server(f"sqlite:///{tmp_path / 'not-created-yet.db'}", tmp_path)
    try:
        http = signed_in(srv.url)
        live = fire_callback(
            http, srv.url, "live-treemap.figure", {"live-range.value": 300, "live-countries.value": []}
        )
        assert live["live-last-minute"]["children"] == "–"
        for graph in ("live-map-downloads", "live-map-rate", "live-rate-chart", "live-treemap"):
            fig = live[graph]["figure"]
            assert fig["data"] == [] and "pypi-pulse up" in annotations(fig), graph
        for tab, alert in (("countries", "countries-empty"), ("trends", "trends-empty")):
            content = fire_callback(http, srv.url, "tab-content.children", {"tabs.active_tab": tab})
            block = content["tab-content"]["children"]
            assert block["props"]["id"] == alert and "No daily history yet" in str(block["props"]["children"])
        fig = fire_callback(
            http, srv.url, "trends-daily.figure", {"trends-packages.value": ["numpy"], "trends-ma.value": [10]}
        )["trends-daily"]["figure"]
        assert "pypi-pulse" in annotations(fig)
    finally:
        srv.stop()


def test_unknown_package_is_named_with_what_to_do(server):
    http = signed_in(server.url)
    fig = fire_callback(
        http, server.url, "trends-daily.figure", {"trends-packages.value": ["no-such-package"], "trends-ma.value": []}
    )["trends-daily"]["figure"]
    assert "No downloads recorded for no-such-package" in annotations(fig) and "search" in annotations(fig)
    fig = fire_callback(
        http,
        server.url,
        "countries-scatter.figure",
        {
            "scatter-a.value": "numpy",
            "scatter-b.value": None,
            "countries-dates.start_date": "2026-10-01",
            "countries-dates.end_date": "2026-10-31",
        },
    )["countries-scatter"]["figure"]
    assert "Pick two packages" in annotations(fig)
