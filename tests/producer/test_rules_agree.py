"""One set of category rules, three implementations that must agree on awkward rows: the rules table
(`pypi_pulse.rules`, the reference), the dataflow's three parsing tiers (Arrow columns, msgspec batch, one event at
a time) counted by its rollup state, and the BigQuery aggregate SQL generated from the table, run on the BigQuery
emulator (bqemulator, its own virtualenv, as tests/producer/test_bigquery_emulator.py starts it)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import orjson
import pytest
from bq_fakes import TABLE, Emulator

from pypi_pulse import rules
from pypi_pulse.config import load_settings
from pypi_pulse.dataflow import parse
from pypi_pulse.dataflow.partials import partial_of
from pypi_pulse.dataflow.rollups import MinuteRollup
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.events import format_bigquery_ts
from pypi_pulse.names import normalize
from pypi_pulse.producer.bigquery import daily_aggregates

DAY = dt.date(2026, 11, 19)
D0 = 1795046400  # DAY at 00:00:00Z

PYTHONS = [
    "3.12.1",
    "3.9rc1",
    "2.7",
    "",
    None,
    "3",
    "3.",
    "10.0.1",
    "3.12abc.1",
    " 3.11",
    "3..1",
    "\u0663.\u0661\u0662",
    "3.13.0+",
    "pypy3.10",
]
INSTALLERS = ["pip", "bandersnatch", "devpi", "Artifactory", "z3c.pypimirror", "Bandersnatch", "", None, "uv"]
SYSTEMS = ["Linux", "Darwin", "Windows", "FreeBSD", "linux", "", None, "Emscripten"]
COUNTRIES = ["US", "XK", "us", "", None, "USA", "U1", "US\n", "ZZ", "DE"]
PROJECTS = ["requests", "Foo_Bar", "foo.bar", "Zope.Interface", "a--b__c"]
CIS = [True, False, None]


def _row(i: int, project: str, country, details, file) -> dict:
    return {
        "timestamp": format_bigquery_ts(D0 + 60 * i + 0.25),
        "country_code": country,
        "project": project,
        "file": dict(file, project=project),
        "details": details,
    }


def tricky_rows() -> list[dict]:
    """Rows of the public table's shape (top-level project as PyPI fills it, nulls inside records, null records):
    each awkward value once beside ordinary ones, then in mixed combinations."""
    plain = {
        "installer": {"name": "pip", "version": "25.3"},
        "python": "3.12.7",
        "system": {"name": "Linux"},
        "cpu": "x86_64",
        "ci": None,
    }
    wheel = {"version": "1.0", "type": "bdist_wheel"}
    rows = [_row(0, "bare", "FR", None, {})]  # no file fields but the project, no details
    for python in PYTHONS:
        rows.append(_row(len(rows), "requests", "US", dict(plain, python=python), wheel))
    for installer in INSTALLERS:
        rows.append(_row(len(rows), "requests", "US", dict(plain, installer={"name": installer}), wheel))
    for system in SYSTEMS:
        rows.append(_row(len(rows), "requests", "US", dict(plain, system={"name": system, "release": "1"}), wheel))
    for country in COUNTRIES:
        rows.append(_row(len(rows), "requests", country, plain, wheel))
    for ci in CIS:
        rows.append(_row(len(rows), "requests", "US", dict(plain, ci=ci), wheel))
    for project in PROJECTS:
        rows.append(_row(len(rows), project, "US", dict(plain, installer=None, system=None), {"type": "sdist"}))
    for i in range(max(len(PYTHONS), len(INSTALLERS), len(SYSTEMS), len(COUNTRIES)) * 3):
        details = {
            "installer": {"name": INSTALLERS[i % len(INSTALLERS)], "version": "1"},
            "python": PYTHONS[i % len(PYTHONS)],
            "system": {"name": SYSTEMS[(i // 2) % len(SYSTEMS)]},
            "cpu": ["x86_64", None, "AMD64", ""][i % 4],
            "ci": CIS[i % len(CIS)],
        }
        if i % 7 == 3:
            details["installer"] = None  # a null record inside details
        if i % 5 == 4:
            details["system"] = None
        file = {"version": [None, "1.0", "2.0rc1"][i % 3], "type": ["bdist_wheel", "sdist", None][i % 3]}
        rows.append(
            _row(
                len(rows),
                PROJECTS[i % len(PROJECTS)],
                COUNTRIES[i % len(COUNTRIES)],
                None if i % 11 == 5 else details,
                file,
            )
        )
    return rows


def by_rules(rows: list[dict]) -> Counter:
    out: Counter = Counter()
    for row in rows:
        for dim, cat in rules.categories(row):
            out[(normalize(rules.project_of(row)), dim, cat)] += 1
    return out


def rolled_up(partial) -> Counter:
    r = MinuteRollup()
    for cols in partial.minutes.values():
        r.add(cols)
    return Counter({(p, d, c): n for (_day, p, d, c), n in r.final(DAY.isoformat()).items()})


def test_the_rules_cover_every_awkward_value():
    got = by_rules(tricky_rows())
    assert {c for (_p, d, c) in got if d == "python_minor"} == {"3.12", "3.9", "2.7", "10.0", "3.13", None}
    assert {c for (_p, d, c) in got if d == "python_major"} == {"3", "2", "10", None}
    assert {c for (_p, d, c) in got if d == "system"} == {"Linux", "Darwin", "Windows", "other", None}
    assert {c for (_p, d, c) in got if d == "country"} == {"US", "XK", "ZZ", "DE", "FR"}
    assert {c for (_p, d, c) in got if d == "ci"} == {"true", None}
    mirrors = sum(1 for r in tricky_rows() if rules.is_mirror(rules.field_value(r, "details.installer.name")))
    assert mirrors > 0
    assert sum(n for (_p, d, _c), n in got.items() if d == "with_mirrors") - mirrors == sum(
        n for (_p, d, _c), n in got.items() if d == "overall"
    )
    assert {p for (p, _d, _c) in got} == {"requests", "foo-bar", "zope-interface", "a-b-c", "bare"}


@pytest.mark.parametrize("tier", ["arrow", "msgspec batch", "per event"])
def test_each_dataflow_tier_counts_what_the_rules_say(tier):
    rows = tricky_rows()
    raw = RawBatch(0, 1, [orjson.dumps(r) for r in rows], len(rows), True)
    if tier == "arrow":
        partial = parse._columnar(raw)
    else:
        events, dead = parse._decode(raw.event_values())
        assert dead == []
        partial = parse._whole_batch(raw, events) if tier == "msgspec batch" else parse._each_event(raw, events, [])
    assert partial is not None, f"the {tier} tier refused the batch"
    assert partial.dead == []
    assert rolled_up(partial_of(partial)) == by_rules(rows)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("bqemulator") / "bqemulator.log").start()
    yield emu
    emu.stop()


def test_bigquery_aggregate_sql_agrees_with_the_rules_on_the_emulator(emulator, tmp_path):
    emulator.create_downloads_table()
    rows = tricky_rows()
    missing = {
        "timestamp": format_bigquery_ts(D0 + 7),
        "country_code": "US",
        "project": "",
        "file": {"project": "", "type": "sdist"},
        "details": None,
    }
    emulator.insert(rows + [missing])  # a row without a project: the dataflow dead-letters it, the SQL skips it
    settings = load_settings(
        None,
        source="bigquery",
        bigquery_endpoint=emulator.endpoint,
        billing_project="demo",
        bigquery_table=TABLE,
        data_dir=tmp_path / "data",
    )
    got: Counter = Counter()
    for project, dimension, category, n in daily_aggregates(settings, DAY):
        got[(project, dimension, category)] += n
    assert got == by_rules(rows)
    dead = parse.parse_batch(RawBatch(0, 1, [orjson.dumps(missing)], 1, True)).dead
    assert [reason for _v, reason in dead] == ["missing project"]
