"""The /api blueprint on data produced by the real broker, dataflow and sink: every endpoint's shape and errors,
and the real `pypistats` client package round trip, compared with independently computed counts."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

import flask
import pytest
from expected_rollups import expected_daily, make_event
from pulse_testing import publish, run_flow

from pypi_pulse.broker import ensure_topics, free_port
from pypi_pulse.dashboard.api import create_api_blueprint
from pypi_pulse.sink.base import open_sink

D1 = 1772323200  # 2026-03-01T00:00:00Z
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


@pytest.fixture(scope="module")
def produced(broker, tmp_path_factory):
    """Three days of events with mirrors and null fields, through the real pipeline; (sink_url, events)."""
    rng = random.Random(99)
    events = [make_event(rng, D1 + rng.random() * 3 * 86400) for _ in range(3000)]
    events += [make_event(rng, D1 + 2 * 86400 + 3600 + i * 0.25) for i in range(400)]  # a live-looking burst
    topic = "api-history"
    ensure_topics(broker.bootstrap, {topic: 4, topic + "-dlq": 1})
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'api.db'}"
    run_flow(broker.bootstrap, topic, url, end_offsets=publish(broker.bootstrap, topic, events))
    return url, events


@pytest.fixture(scope="module")
def expected(produced):
    return expected_daily(produced[1])


@pytest.fixture
def client(produced):
    return _api_app(produced[0]).test_client()


def _api_app(url: str) -> flask.Flask:
    """The /api routes as `serve` mounts them (dashboard/app.py): the history and live API, and trending."""
    from pypi_pulse.dashboard.trending import create_trending_blueprint

    app = flask.Flask("api-test")
    app.register_blueprint(create_api_blueprint(lambda: open_sink(url, readonly=True)))
    app.register_blueprint(create_trending_blueprint(lambda: open_sink(url, readonly=True)), url_prefix="/api")
    return app


def _series(expected: Counter, project: str, dim: str) -> list[dict]:
    return sorted(
        (
            {"category": "null" if c is None else c, "date": d, "downloads": n}
            for (d, p, dd, c), n in expected.items()
            if p == project and dd == dim
        ),
        key=lambda r: (r["date"], r["category"]),
    )


def _get(client, url, status=200):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True))
    assert r.mimetype == "application/json"
    return r.get_json()


# ---- pypistats-compatible endpoints --------------------------------------------------------------------------
def test_recent(client, expected):
    def day(d):
        return expected[(d, "zope-interface", "overall", None)]

    body = _get(client, "/api/packages/Zope.Interface/recent")
    # the newest stored day (03-03) is the last complete one: the stream ended with it
    assert body == {
        "data": {"last_day": day(DAYS[2]), "last_week": sum(map(day, DAYS)), "last_month": sum(map(day, DAYS))},
        "package": "zope-interface",
        "type": "recent_downloads",
    }
    for period, key in (("day", "last_day"), ("week", "last_week"), ("month", "last_month")):
        assert _get(client, f"/api/packages/zope_interface/recent?period={period}")["data"] == {key: body["data"][key]}


def test_overall_with_and_without_mirrors(client, expected):
    with_m = [dict(r, category="with_mirrors") for r in _series(expected, "django", "with_mirrors")]
    without = [dict(r, category="without_mirrors") for r in _series(expected, "django", "overall")]
    body = _get(client, "/api/packages/Django/overall")
    assert body["package"] == "django" and body["type"] == "overall_downloads"
    assert body["data"] == sorted(with_m + without, key=lambda r: (r["date"], r["category"]))
    assert _get(client, "/api/packages/django/overall?mirrors=true")["data"] == with_m
    assert _get(client, "/api/packages/django/overall?mirrors=false")["data"] == without
    ranged = _get(client, f"/api/packages/django/overall?mirrors=false&start_date={DAYS[1]}&end_date={DAYS[1]}")
    assert ranged["data"] == [r for r in without if r["date"] == DAYS[1]]


@pytest.mark.parametrize(
    "kind,param,value",
    [
        ("python_major", "version", "3"),
        ("python_major", "version", "null"),
        ("python_minor", "version", "3.10"),
        ("system", "os", "linux"),
        ("system", "os", "other"),
        ("system", "os", "null"),
    ],
)
def test_breakdowns_and_their_filters(client, expected, kind, param, value):
    full = _series(expected, "requests", kind)
    body = _get(client, f"/api/packages/requests/{kind}")
    assert body == {"data": full, "package": "requests", "type": f"{kind}_downloads"}
    assert "null" in {r["category"] for r in full}  # null fields are there, rendered as pypistats.org does
    filtered = _get(client, f"/api/packages/requests/{kind}?{param}={value}")["data"]
    assert filtered and filtered == [r for r in full if r["category"].lower() == value]


def test_errors(client):
    assert _get(client, "/api/packages/no-such-package/overall", 404)["error"].startswith(
        "package 'no-such-package' not found"
    )
    assert "period" in _get(client, "/api/packages/numpy/recent?period=year", 400)["error"]
    assert "start_date" in _get(client, "/api/packages/numpy/overall?start_date=2026-13-01", 400)["error"]
    assert "after" in _get(client, "/api/packages/numpy/system?start_date=2026-03-03&end_date=2026-03-01", 400)["error"]
    assert "mirrors" in _get(client, "/api/packages/numpy/overall?mirrors=maybe", 400)["error"]
    assert "limit" in _get(client, "/api/countries/US/top?limit=0", 400)["error"]
    assert "limit" in _get(client, "/api/countries/US/top?limit=ten", 400)["error"]
    assert "country code" in _get(client, "/api/countries/QQ/top", 400)["error"]
    assert "not found" in _get(client, "/api/countries?package=nope", 404)["error"]
    assert "last=N" in _get(client, "/api/live/windows", 400)["error"]
    assert "ISO-8601" in _get(client, "/api/live/windows?start=yesterday&end=now", 400)["error"]
    assert (
        "after start"
        in _get(client, "/api/live/windows?start=2026-03-02T00:00:00Z&end=2026-03-01T00:00:00Z", 400)["error"]
    )
    assert "not both" in _get(client, "/api/live/windows?last=5&start=2026-03-01T00:00:00Z", 400)["error"]


# ---- countries -----------------------------------------------------------------------------------------------
def test_countries(client, expected):
    want = Counter()
    for (_d, _p, dim, c), n in expected.items():
        if dim == "country":
            want[c] += n
    body = _get(client, f"/api/countries?start_date={DAYS[0]}&end_date={DAYS[2]}")
    assert body["type"] == "country_downloads" and body["package"] is None
    assert {r["country"]: r["downloads"] for r in body["data"]} == want
    assert [r["downloads"] for r in body["data"]] == sorted(want.values(), reverse=True)
    one = _get(client, f"/api/countries?start_date={DAYS[0]}&end_date={DAYS[0]}&package=NumPy")
    assert one["package"] == "numpy"
    assert {r["country"]: r["downloads"] for r in one["data"]} == {
        c: n for (d, p, dim, c), n in expected.items() if (d, p, dim) == (DAYS[0], "numpy", "country")
    }


def test_country_top(client, expected):
    per = Counter()
    for (d, p, dim, c), n in expected.items():
        if dim == "country" and c == "DE" and d in DAYS[1:]:
            per[p] += n
    body = _get(client, f"/api/countries/de/top?start_date={DAYS[1]}&end_date={DAYS[2]}&limit=3")
    assert body["country"] == "DE" and body["type"] == "country_top_packages"
    assert body["data"] == [
        {"project": p, "downloads": n} for p, n in sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    ]


# ---- live ----------------------------------------------------------------------------------------------------
def test_live_windows_and_summary(client, produced):
    burst = D1 + 2 * 86400 + 3600  # 400 events, 4 a second, for 100 seconds
    rows = _get(client, "/api/live/windows?start=2026-03-03T01:00:00Z&end=2026-03-03T01:00:10Z")
    assert [r["start"] for r in rows][:1] == ["2026-03-03T01:00:00Z"] and len(rows) == 10
    assert all(r["downloads"] >= 4 and sum(r["countries"].values()) == r["downloads"] for r in rows)
    assert set(rows[0]) == {"start", "downloads", "unique_packages", "countries", "top"}
    assert set(rows[0]["top"][0]) == {"project", "downloads"}
    last = _get(client, "/api/live/windows?last=3")
    assert len(last) == 3 and last[0]["start"] < last[1]["start"] < last[2]["start"]
    summary = _get(client, "/api/live/summary")
    assert summary["latest"] == last[-1]
    assert summary["downloads"] == len(produced[1]) and summary["counters"]["counted"] == len(produced[1])
    assert burst  # (documented above)


def test_openapi_describes_every_route(client, produced):
    from openapi_schema_validator import OAS30Validator
    from openapi_spec_validator import validate

    doc = _get(client, "/api/openapi.json")
    validate(doc)  # a valid OpenAPI 3 document
    # and the answers match the schemas it declares
    for url, path in (
        ("/api/packages/numpy/recent", "/api/packages/{package}/recent"),
        ("/api/packages/numpy/system", "/api/packages/{package}/system"),
        ("/api/countries", "/api/countries"),
        ("/api/countries/US/top", "/api/countries/{cc}/top"),
        ("/api/live/windows?last=2", "/api/live/windows"),
        ("/api/live/summary", "/api/live/summary"),
        ("/api/live/top?window=60", "/api/live/top"),
        ("/api/live/top?window=0", "/api/live/top"),
        ("/api/trending?window=1h", "/api/trending"),
        ("/api/trending?window=x", "/api/trending"),
        ("/api/packages/nope/recent", "/api/packages/{package}/recent"),
    ):
        r = client.get(url)
        schema = doc["paths"][path]["get"]["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
        OAS30Validator({**schema, "components": doc["components"]}).validate(r.get_json())
    app = _api_app(produced[0])
    routes = {r.rule.replace("<", "{").replace(">", "}") for r in app.url_map.iter_rules() if r.rule.startswith("/api")}
    assert routes == set(doc["paths"])


# ---- the real pypistats client -------------------------------------------------------------------------------
@pytest.fixture
def pypistats_server(produced, tmp_path, monkeypatch):
    import pypistats
    from pypistats import _cache
    from werkzeug.serving import make_server

    app = flask.Flask("pypistats-compat")
    app.register_blueprint(create_api_blueprint(lambda: open_sink(produced[0], readonly=True)))
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(pypistats, "BASE_URL", f"http://127.0.0.1:{server.server_port}/api/")
    monkeypatch.setattr(_cache, "CACHE_DIR", tmp_path / "pypistats-cache")  # never answer from a stale cache
    try:
        yield pypistats
    finally:
        server.shutdown()
        thread.join(10)


def test_pypistats_client_round_trip(pypistats_server, expected):
    pypistats = pypistats_server
    name = "Zope.Interface"  # the client lower-cases it; we match by the normalised form
    p = "zope-interface"
    recent = json.loads(pypistats.recent(name, format="json"))

    def day(d):
        return expected[(d, p, "overall", None)]

    assert recent["data"] == {
        "last_day": day(DAYS[2]),
        "last_week": sum(map(day, DAYS)),
        "last_month": sum(map(day, DAYS)),
    }
    assert json.loads(pypistats.recent(name, "week", format="json"))["data"] == {"last_week": sum(map(day, DAYS))}

    def totals(dim, label=None):
        t = Counter()
        for (_d, pp, dd, c), n in expected.items():
            if pp == p and dd == dim:
                t[label or ("null" if c is None else c)] += n
        return dict(t)

    def client_totals(res):
        return {r["category"]: r["downloads"] for r in json.loads(res)["data"]}

    assert client_totals(pypistats.overall(name, format="json")) == {
        **totals("with_mirrors", "with_mirrors"),
        **totals("overall", "without_mirrors"),
    }
    assert client_totals(pypistats.overall(name, mirrors=False, format="json")) == totals("overall", "without_mirrors")
    assert client_totals(pypistats.python_major(name, format="json")) == totals("python_major")
    assert client_totals(pypistats.python_minor(name, format="json")) == totals("python_minor")
    assert client_totals(pypistats.python_minor(name, version="3.10", format="json")) == {
        "3.10": totals("python_minor")["3.10"]
    }
    assert client_totals(pypistats.system(name, format="json")) == totals("system")
    assert client_totals(pypistats.system(name, os="linux", format="json")) == {"Linux": totals("system")["Linux"]}
    daily = json.loads(pypistats.system(name, total="daily", start_date=DAYS[1], end_date=DAYS[1], format="json"))[
        "data"
    ]
    assert daily == [r for r in _series(expected, p, "system") if r["date"] == DAYS[1]]
    # the table formats parse our data too (what command-line users see)
    table = pypistats.python_major(name, format="markdown", color="no")
    assert "| category |" in table and "| null" in table
