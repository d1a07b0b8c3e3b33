"""The Categories tab and the Countries map's hover through the real server: the known rollups of
dashboard_testing written with the real Sink API, most days summarised and the last ones not, each callback fired
as the page fires it, and its figures checked against sums computed here from the written counts."""

from __future__ import annotations

from collections import Counter

import pytest
from dashboard_testing import N_DAYS, Server, data_dir, day, fill, fire_callback, rollup_counts, signed_in  # noqa: F401

from pypi_pulse.categories import category_map
from pypi_pulse.countries import alpha3
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.summaries import summarize

START, END = day(N_DAYS - 20), day(N_DAYS - 1)  # summarised up to day(N_DAYS - 5), then read from the rollups


@pytest.fixture(scope="module")
def categories_server(data_dir, tmp_path_factory):  # noqa: F811
    url = f"sqlite:///{tmp_path_factory.mktemp('categories-tab') / 's.db'}"
    fill(url)
    with open_sink(url) as db:
        assert summarize(db, before_day=day(N_DAYS - 4)) == N_DAYS - 4
    s = Server(url, data_dir)
    yield s
    s.stop()


def _counts(first: int, last: int):
    for i in range(first, last + 1):
        yield from rollup_counts(i).items()


def _period() -> dict:
    return {"categories-dates.start_date": START, "categories-dates.end_date": END, "theme.data": "light"}


def test_each_categorys_share_of_each_day(categories_server):
    base = categories_server.url
    out = fire_callback(signed_in(base), base, "categories-share", _period())
    fig = out["categories-share"]["figure"]
    cmap = category_map()
    for i, d in enumerate(range(N_DAYS - 20, N_DAYS)):
        per = Counter()
        for (_d, p, dim, _c), n in rollup_counts(d).items():
            if dim == "overall" and p in cmap:
                per[cmap[p]] += n
        total = sum(per.values())
        for t in fig["data"]:
            assert t["x"][i] == day(d)
            assert t["y"][i] == pytest.approx(100 * per[t["name"]] / total)
            assert t["customdata"][i] == per[t["name"]]
    assert sum(t["y"][0] for t in fig["data"]) == pytest.approx(100)


@pytest.mark.parametrize("country", ["DE", "US", "JP"])
def test_a_countrys_category_mix_against_the_rest_of_the_world(categories_server, country):
    base = categories_server.url
    out = fire_callback(
        signed_in(base), base, "categories-country-mix", {**_period(), "categories-country.value": country}
    )
    mine, rest = out["categories-country-mix"]["figure"]["data"]
    cmap = category_map()
    a, b = Counter(), Counter()
    for (_d, p, dim, cc), n in _counts(N_DAYS - 20, N_DAYS - 1):
        if dim == "country" and p in cmap:
            (a if cc == country else b)[cmap[p]] += n
    want = {c: (100 * a[c] / sum(a.values()), 100 * b[c] / sum(b.values())) for c in a | b}
    assert dict(zip(mine["x"], zip(mine["y"], rest["y"]))) == {c: pytest.approx(v) for c, v in want.items()}
    ratios = [m / r for m, r in zip(mine["y"], rest["y"])]
    assert ratios == sorted(ratios, reverse=True)  # the category the country leans to most comes first
    assert [c[0] for c in mine["customdata"]] == [a[c] for c in mine["x"]]


def test_a_categorys_top_packages_over_the_period(categories_server):
    base = categories_server.url
    out = fire_callback(
        signed_in(base), base, "categories-top", {**_period(), "categories-category.value": "deep learning"}
    )
    bars = out["categories-top"]["figure"]["data"][0]
    torch = sum(n for (_d, p, dim, _c), n in _counts(N_DAYS - 20, N_DAYS - 1) if p == "torch" and dim == "overall")
    assert list(zip(bars["y"], bars["x"])) == [("torch", torch)]


def test_bad_inputs_give_the_empty_state_not_an_error(categories_server):
    base = categories_server.url
    http = signed_in(base)
    out = fire_callback(http, base, "categories-top", {**_period(), "categories-category.value": {"x": 1}})
    assert "Pick a category" in str(out["categories-top"]["figure"]["layout"]["annotations"])
    out = fire_callback(
        http,
        base,
        "categories-country-mix",
        {"categories-dates.start_date": END, "categories-dates.end_date": START, "categories-country.value": "DE"},
    )
    assert "starts" in str(out["categories-country-mix"]["figure"]["layout"]["annotations"])


def test_the_countries_map_hover_carries_each_countrys_top_five(categories_server):
    base = categories_server.url
    out = fire_callback(
        signed_in(base),
        base,
        "countries-map",
        {
            "countries-dates.start_date": START,
            "countries-dates.end_date": END,
            "countries-package.value": None,
            "theme.data": "light",
        },
    )
    trace = out["countries-map"]["figure"]["data"][0]
    assert "%{hovertext}" in trace["hovertemplate"]
    per: dict = {}
    for (_d, p, dim, cc), n in _counts(N_DAYS - 20, N_DAYS - 1):
        if dim == "country":
            per.setdefault(cc, Counter())[p] += n
    hover = dict(zip(trace["locations"], trace["hovertext"]))
    assert set(hover) == {alpha3(cc) for cc in per}
    for cc, totals in per.items():
        top = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        assert hover[alpha3(cc)] == "<br>".join(f"{i}. {p}: {n:,}" for i, (p, n) in enumerate(top, 1))
