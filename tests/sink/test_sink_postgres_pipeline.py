"""End to end into PostgreSQL: events through the real broker and the real Bytewax dataflow, counted
independently here, must come out of the PostgreSQL sink exactly, window by window and day by day."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from pypi_pulse.sink.base import open_sink

MIDNIGHT = 1_795_824_000  # 2026-11-28T00:00:00Z: the events straddle it, so two days get rollups
PROJECTS = [
    "numpy",
    "requests",
    "boto3",
    "urllib3",
    "setuptools",
    "Zope.Interface",
    "typing_extensions",
    "six",
    "idna",
    "certifi",
    "pip",
    "wheel",
    "attrs",
]
COUNTRIES = ["US", "DE", "CN", "IN", "GB", None, "XX"]


def _ts(second: int, micros: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{micros:06d} UTC"


def _events(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    events = []
    for _ in range(n):
        second = MIDNIGHT - 20 + rnd.randrange(40)
        project = rnd.choices(PROJECTS, weights=range(len(PROJECTS), 0, -1))[0]
        installer = rnd.choice(["pip", "pip", "uv", "bandersnatch"])
        events.append(
            {
                "timestamp": _ts(second, rnd.randrange(1_000_000)),
                "country_code": rnd.choice(COUNTRIES),
                "url": "/packages/x",
                "project": project,
                "file": {"filename": f"{project}-1.0.tar.gz", "project": project, "version": "1.0", "type": "sdist"},
                "details": {
                    "installer": {"name": installer, "version": "1"},
                    "python": "3.12.1",
                    "system": {"name": "Linux"},
                    "cpu": "x86_64",
                    "ci": None,
                },
                "tls_protocol": "TLSv1.3",
                "tls_cipher": "x",
            }
        )
    rnd.shuffle(events)  # out of order across partitions and within them
    return events


def _normalised(p: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", p).lower()


@pytest.mark.postgres
def test_the_real_dataflow_writes_exact_windows_and_rollups_into_postgresql(
    broker, topic, pg_url, flow_helpers, tmp_path
):
    events = _events(3000)
    ends = flow_helpers.publish(broker.bootstrap, topic, events)
    history = str(tmp_path / "history")
    flow_helpers.run_flow(broker.bootstrap, topic, pg_url, end_offsets=ends, history=history)

    per_second: dict[int, Counter] = defaultdict(Counter)
    countries: dict[int, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    with_mirrors: Counter = Counter()
    for e in events:
        second = int(datetime.strptime(e["timestamp"][:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
        per_second[second][_normalised(e["project"])] += 1
        cc = e["country_code"] or "ZZ"  # two capitals are kept as logged ("XX" too); null is ZZ
        countries[second][cc] += 1
        day = "2026-11-27" if second < MIDNIGHT else "2026-11-28"
        with_mirrors[day] += 1
        if e["details"]["installer"]["name"] != "bandersnatch":
            overall[day] += 1

    with open_sink(pg_url, readonly=True, history=history) as db:
        rows = db.windows(MIDNIGHT - 60, MIDNIGHT + 60)
        assert [w.start for w in rows] == sorted(per_second)
        for w in rows:
            projects = per_second[w.start]
            assert w.downloads == sum(projects.values())
            assert w.unique_packages == len(projects)
            assert w.countries == dict(countries[w.start])
            assert w.top == sorted(projects.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        assert sum(w.downloads for w in rows) == len(events)
        days = ("2026-11-27", "2026-11-28")
        assert {d: n for d, _, _, n in db.daily(None, "overall", *days)} == dict(overall)
        assert {d: n for d, _, _, n in db.daily(None, "with_mirrors", *days)} == dict(with_mirrors)
        assert db.stats().counters.get("events", len(events)) == len(events)
