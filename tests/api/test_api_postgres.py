"""The same read layer and API on PostgreSQL: the dataflow writes a real server, the endpoints answer exactly as
on SQLite (independently computed counts), and a backfilled day is not double counted by the stream there."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import flask
import pytest
from expected_rollups import expected_daily, expected_totals, make_event, stored_daily, stored_totals
from pulse_testing import postgres_schema, publish, run_flow

from pypi_pulse.broker import ensure_topics
from pypi_pulse.dashboard.api import create_api_blueprint
from pypi_pulse.sink import queries
from pypi_pulse.sink.base import open_sink

pytestmark = pytest.mark.postgres

D1 = 1772323200  # 2026-03-01T00:00:00Z
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


@pytest.fixture
def pg_url(postgres_url):
    with postgres_schema(postgres_url, "pulse_api") as url:
        yield url


def test_api_and_backfill_on_postgres(broker, pg_url, tmp_path):
    history = tmp_path / "history"
    rng = random.Random(3)
    events = [make_event(rng, D1 + rng.random() * 3 * 86400) for _ in range(2000)]
    backfilled = [make_event(rng, D1 + rng.random() * 86399) for _ in range(300)]  # the "complete" 03-01
    with open_sink(pg_url, history=history) as db:
        rows = [(p, d, c, n) for (_day, p, d, c), n in expected_daily(backfilled).items()]
        db.backfill_day(DAYS[0], rows, "test")
    topic = f"api-pg-{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, {topic: 4, topic + "-dlq": 1})
    run_flow(
        broker.bootstrap, topic, pg_url, end_offsets=publish(broker.bootstrap, topic, events), history=str(history)
    )

    stream = expected_daily(events)
    want = Counter({k: v for k, v in stream.items() if k[0] != DAYS[0]}) + expected_daily(backfilled)
    with open_sink(pg_url, readonly=True, history=history) as db:
        assert stored_daily(db) == want  # 03-01 is the backfill's alone: the stream added nothing to it
        assert stored_totals(db) == expected_totals(want)
        assert queries.backfilled_days(db) == {DAYS[0]: "test"}
        assert queries.day_range(db) == (DAYS[0], DAYS[2])
        assert queries.known_package(db, "Zope_Interface") == "zope-interface"
        cmp = queries.compare(db, ["numpy", "Django"], DAYS[0], DAYS[2])
        assert cmp["numpy"] == [(d, want[(d, "numpy", "overall", None)]) for d in DAYS]

    app = flask.Flask("api-pg")
    app.register_blueprint(create_api_blueprint(lambda: open_sink(pg_url, readonly=True, history=history)))
    client = app.test_client()

    def day(d):
        return want[(d, "requests", "overall", None)]

    assert client.get("/api/packages/requests/recent").get_json()["data"] == {
        "last_day": day(DAYS[2]),
        "last_week": sum(map(day, DAYS)),
        "last_month": sum(map(day, DAYS)),
    }
    body = client.get("/api/packages/requests/python_major").get_json()
    assert body["data"] == sorted(
        (
            {"category": "null" if c is None else c, "date": d, "downloads": n}
            for (d, p, dim, c), n in want.items()
            if p == "requests" and dim == "python_major"
        ),
        key=lambda r: (r["date"], r["category"]),
    )
    top = client.get(f"/api/countries/US/top?start_date={DAYS[0]}&end_date={DAYS[2]}&limit=2").get_json()["data"]
    per = Counter()
    for (_d, p, dim, c), n in want.items():
        if dim == "country" and c == "US":
            per[p] += n
    assert top == [{"project": p, "downloads": n} for p, n in sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]
    assert client.get("/api/packages/nope/system").status_code == 404
    assert len(client.get("/api/live/windows?last=5").get_json()) == 5
