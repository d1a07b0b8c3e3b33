"""Hostile requests against the real `pypi-pulse serve`: every API endpoint and every Dash callback fed None, wrong
types, extreme dates and huge values answers without a 500 (API errors as 400 JSON), every response carries the
security headers, an unknown asset path is a quiet 404, and request and response sizes are capped."""

from __future__ import annotations

import json
import re

import pycountry
import pytest
import requests
from web_faults_testing import Serve, login_form, prepare_data_dir

REQUEST_CAP = 256 * 1024  # the max_request_bytes default
RESPONSE_CAP = 8 * 2**20  # the max_response_bytes default
SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")

EXTREME_DATES = [
    "0001-01-05",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "not-a-date",
    "",
    "2026-11-20T00:00:00",
    "1" * 5000,
]
HOSTILE_VALUES = [
    None,
    0,
    -1,
    10**30,
    1.5,
    True,
    "",
    "x" * 20_000,
    [],
    [None],
    [[1]],
    {"a": 1},
    ["numpy"] * 2000,
    [f"p{i}" for i in range(2000)],
    ["US", "DE", 3, None, {"x": 1}],
    "0001-01-05",
    "9999-12-31",
    {"points": "x"},
    {"points": [None]},
    {"points": [{"location": [1]}]},
]


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    s = Serve(d, prepare_data_dir(d))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(serve):
    h = requests.Session()
    assert h.post(serve.url + "/login", data=login_form(h, serve.url), allow_redirects=False).status_code == 302
    return h


def api_cases() -> list[str]:
    pkg = "/api/packages/numpy"
    out = []
    for d in EXTREME_DATES:
        for path in (
            f"{pkg}/overall",
            f"{pkg}/python_major",
            f"{pkg}/python_minor",
            f"{pkg}/system",
            "/api/countries",
            "/api/countries/US/top",
        ):
            out += [f"{path}?end_date={d}", f"{path}?start_date={d}", f"{path}?start_date={d}&end_date={d}"]
    out += [
        f"{pkg}/overall?start_date=0001-01-01&end_date=9999-12-31",
        f"{pkg}/overall?start_date=2026-10-10&end_date=2026-10-01",
        f"{pkg}/overall?mirrors=maybe",
        f"{pkg}/overall?mirrors=" + "x" * 10_000,
        f"{pkg}/recent?period=year",
        f"{pkg}/recent?period=%00",
        f"{pkg}/python_minor?version=%00",
        f"{pkg}/system?os=" + "y" * 10_000,
        "/api/packages/%00/overall",
        "/api/packages/" + "a" * 20_000 + "/overall",
        "/api/packages/-x-/recent",
        "/api/packages/a%20b/overall",
        "/api/packages/numpy%00/system",
        "/api/countries?package=%00",
        "/api/countries?package=" + "b" * 20_000,
        "/api/countries?package=no-such-pkg",
        "/api/countries/XX/top",
        "/api/countries/%00%00/top",
        "/api/countries/" + "Z" * 5000 + "/top",
        "/api/countries/US/top?limit=0",
        "/api/countries/US/top?limit=-5",
        "/api/countries/US/top?limit=1e9",
        "/api/countries/US/top?limit=" + "9" * 5000,
        "/api/countries/US/top?limit=abc",
        "/api/live/windows",
        "/api/live/windows?last=0",
        "/api/live/windows?last=" + "9" * 5000,
        "/api/live/windows?last=-1",
        "/api/live/windows?last=1.5",
        "/api/live/windows?last=1&start=x",
        "/api/live/windows?start=0001-01-01T00:00:00Z&end=0001-01-01T01:00:00Z",
        "/api/live/windows?start=9999-12-31T23:00:00Z&end=9999-12-31T23:59:59Z",
        "/api/live/windows?start=nan&end=inf",
        "/api/live/windows?start=2026-11-20T12:00:00Z&end=2026-11-19T12:00:00Z",
        "/api/live/windows?start=0001-01-01T00:00:00Z&end=9999-12-31T00:00:00Z",
        "/api/live/windows?start=%00&end=%00",
        "/api/live/summary?x=%00",
        "/api/live/top?window=0",
        "/api/live/top?window=-1",
        "/api/live/top?window=abc",
        "/api/live/top?window=nan",
        "/api/live/top?window=" + "9" * 5000,
        "/api/live/top?limit=0",
        "/api/live/top?limit=1e9",
        "/api/live/top?limit=%00",
        "/api/trending?window=0h",
        "/api/trending?window=-1h",
        "/api/trending?window=abc",
        "/api/trending?window=%00",
        "/api/trending?window=" + "9" * 5000 + "h",
        "/api/trending?limit=-5",
        "/api/trending?limit=abc",
        "/api/trending?limit=" + "9" * 5000,
        "/api/openapi.json?y=1",
        "/api/no-such-endpoint",
        "/api/packages/numpy/no-such-kind",
    ]
    return out


def test_the_hostile_cases_reach_every_documented_api_route(serve, http):
    """A route added to the API without hostile cases here fails this test, so 'every endpoint' stays true."""
    paths = http.get(serve.url + "/api/openapi.json", timeout=30).json()["paths"]
    cases = [c.split("?", 1)[0] for c in api_cases()]
    for template in paths:
        pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$")
        assert any(pattern.match(c) for c in cases), f"no hostile case for {template}"


def test_every_api_endpoint_answers_bad_input_with_a_json_error_never_a_500(serve, http):
    cases = api_cases()
    statuses = {}
    for path in cases:
        r = http.get(serve.url + path)
        statuses[path] = r.status_code
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
        body = r.json()
        if r.status_code >= 400:
            assert r.status_code in (400, 404) and isinstance(body["error"], str) and body["error"], (path, body)
        for h in SECURITY_HEADERS:
            assert h in r.headers, (path, h)
    must_be_400 = [
        p
        for p in cases
        if "end_date=not-a-date" in p
        or "2026-02-30" in p
        or "limit=abc" in p
        or "/api/packages/%00/" in p
        or "package=%00" in p
        or "period=year" in p
        or "mirrors=maybe" in p
    ]
    assert must_be_400 and all(statuses[p] == 400 for p in must_be_400), {p: statuses[p] for p in must_be_400}
    # the testers' 500s: an early end date answers with an empty series in pypistats' shape
    r = http.get(serve.url + "/api/packages/numpy/overall?end_date=0001-01-05")
    assert r.status_code == 200 and r.json() == {"data": [], "package": "numpy", "type": "overall_downloads"}
    r = http.get(serve.url + "/api/countries/US/top?end_date=0001-01-05")
    assert r.status_code == 200 and r.json()["data"] == [] and r.json()["start_date"] == "0001-01-01"
    assert "Traceback" not in serve.log_text()


def callbacks(http, base: str) -> list[dict]:
    deps = http.get(base + "/_dash-dependencies").json()
    return [d for d in deps if not d.get("clientside_function")]


def fire(http, base: str, dep: dict, values: dict) -> requests.Response:
    """POST one callback as the page does, with `values` ({"id.prop": value}; missing ones are None)."""

    def props(items):
        return [
            {"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")} for i in items
        ]

    outs = dep["output"].strip(".").split("...")
    outputs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in outs]
    body = {
        "output": dep["output"],
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": props(dep["inputs"]),
        "state": props(dep["state"]),
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in dep["inputs"][:1]],
    }
    return http.post(
        base + "/_dash-update-component", data=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def test_every_dash_callback_tolerates_none_wrong_types_and_extreme_values(serve, http):
    deps = callbacks(http, serve.url)
    assert len(deps) >= 10
    fired = 0
    for dep in deps:
        keys = [f"{i['id']}.{i['property']}" for i in dep["inputs"] + dep["state"]]
        for value in HOSTILE_VALUES:
            trials = [dict.fromkeys(keys, value)] + [{k: value} for k in keys]  # all at once, then one at a time
            for values in trials:
                r = fire(http, serve.url, dep, values)
                fired += 1
                assert r.status_code in (200, 204), (dep["output"], values, r.status_code, r.text[:300])
                assert len(r.content) < RESPONSE_CAP
    assert fired > 500
    assert "Traceback" not in serve.log_text()


def test_a_small_request_cannot_make_a_huge_response(serve, http):
    """The testers' 20 KB request that came back as 9.8 MB: every country on the hour-long live rate chart."""
    deps = {d["output"]: d for d in callbacks(http, serve.url)}
    live = next(d for o, d in deps.items() if "live-rate-chart.figure" in o)
    every_country = sorted(c.alpha_2 for c in pycountry.countries)
    r = fire(http, serve.url, live, {"live-range.value": 3600, "live-countries.value": every_country})
    assert r.status_code == 200
    rate = r.json()["response"]["live-rate-chart"]["figure"]
    assert len(rate["data"]) == 1 + 10  # all countries, plus at most max_chart_series compared
    assert len(r.content) < 2 * 2**20, len(r.content)

    daily = next(d for o, d in deps.items() if "trends-daily.figure" in o)
    names = ["numpy", "requests", "torch", "flask", "matplotlib"] + [f"pkg-{i}" for i in range(3000)]
    r = fire(http, serve.url, daily, {"trends-packages.value": names, "trends-ma.value": [10, 20, 30]})
    assert r.status_code == 200 and len(r.content) < 2 * 2**20
    assert len(r.json()["response"]["trends-daily"]["figure"]["data"]) == 5 * 4


def test_oversized_callback_body_is_refused_with_413(serve, http):
    deps = {d["output"]: d for d in callbacks(http, serve.url)}
    daily = next(d for o, d in deps.items() if "trends-daily.figure" in o)
    r = fire(http, serve.url, daily, {"trends-packages.value": ["x" * 1000] * (REQUEST_CAP // 1000 + 10)})
    assert r.status_code == 413 and "error" in r.json()
    r = fire(http, serve.url, daily, {"trends-packages.value": ["numpy"]})
    assert r.status_code == 200


def test_security_headers_on_every_response(serve, http):
    anonymous = requests.Session()
    answers = [
        anonymous.get(serve.url + "/login"),
        anonymous.get(serve.url + "/", allow_redirects=False),
        anonymous.get(serve.url + "/_dash-layout"),
        anonymous.get(serve.url + "/assets/bootstrap.min.css"),
        anonymous.get(serve.url + "/no/such/page", allow_redirects=False),
        http.get(serve.url + "/"),
        http.get(serve.url + "/_dash-layout"),
        http.get(serve.url + "/api/live/summary"),
        http.get(serve.url + "/api/countries/XX/top"),
    ]
    for r in answers:
        assert r.headers["X-Frame-Options"] == "DENY", r.url
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp


def test_unknown_asset_paths_are_404_without_a_traceback_in_the_log(serve):
    before = len(serve.log_text())
    for path in (
        "/_dash-component-suites/dash/dash.py",
        "/_dash-component-suites/dash/..%2f..%2f..%2fetc%2fpasswd",
        "/_dash-component-suites/no_such_package/x.js",
        "/_dash-component-suites/dash/deps/nope.min.js",
        "/assets/no-such-file.css",
    ):
        r = requests.get(serve.url + path)
        assert r.status_code == 404, (path, r.status_code)
    log = serve.log_text()[before:]
    assert "Traceback" not in log and len(log) < 2000, log[:2000]
