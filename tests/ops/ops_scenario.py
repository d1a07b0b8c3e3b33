"""A deterministic stream of download events for the operations tests, and the figures it must produce,
computed from the events alone (never from the pipeline)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import orjson

# 200 s ending a minute after a 10-minute boundary: with a 60 s lateness the first rollup block (09:50–10:00)
# is sealed while the stream runs, the rest is not
T0 = int(datetime(2026, 11, 20, 9, 57, 40, tzinfo=UTC).timestamp())
SECONDS = 200
LATENESS_S = 60
SPAN_S = 10
PROJECTS = [f"pkg-{i:02d}" for i in range(40)]
WEIGHTS = [1.0 / (i + 1) for i in range(40)]
COUNTRIES = ["US", "US", "US", "DE", "CN", "GB", "IN", "FR", "JP", "BR", None, "XX"]


def make_events(rng: random.Random):
    """Good events in event-time order (so every partition is in order), some mirrors, some broken lines."""
    good, lines = [], []
    for sec in range(T0, T0 + SECONDS):
        for _ in range(80 if sec == T0 + SECONDS - 1 else rng.randint(5, 40)):  # a full top 10 in the last second
            project = rng.choices(PROJECTS, WEIGHTS)[0]
            installer = "bandersnatch" if rng.random() < 0.03 else "pip"
            e = {
                "timestamp": f"{datetime.fromtimestamp(sec + rng.random() * 0.99, UTC):%Y-%m-%d %H:%M:%S.%f} UTC",
                "country_code": rng.choice(COUNTRIES),
                "project": project,
                "file": {"project": project, "version": "1.0", "type": "bdist_wheel"},
                "details": {"installer": {"name": installer}, "python": "3.12.1", "system": {"name": "Linux"}},
            }
            good.append((sec, e))
            lines.append(orjson.dumps(e))
    bad = {
        "invalid_event": [b"{not json", b"[1, 2"],
        "missing_project": [
            orjson.dumps({"timestamp": f"{datetime.fromtimestamp(T0 + 5, UTC):%Y-%m-%d %H:%M:%S} UTC"})
        ],
    }
    for i, b in enumerate(bad["invalid_event"] + bad["missing_project"]):
        lines.insert(100 + i * 500, b)
    return good, lines, {k: len(v) for k, v in bad.items()}


def expected(good):
    last = max(sec for sec, _ in good)
    span = [(s, e) for s, e in good if s > last - SPAN_S]
    countries = Counter()
    for _, e in span:
        cc = e["country_code"]
        countries[cc or "ZZ"] += 1  # every code given is two capitals (kept as logged, "XX" too) or null
    per_sec_projects: dict[int, set] = {}
    for s, e in span:
        per_sec_projects.setdefault(s, set()).add(e["project"])
    newest = Counter(e["project"] for s, e in good if s == last)
    top = sorted(newest.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    # the UTC day of the newest window so far, mirrors included: sealed or not, every event counts once
    today = sum(1 for s, _ in good if s // 86400 == last // 86400)
    return {
        "last": last,
        "rate": len(span) / SPAN_S,
        "countries": {cc: n / SPAN_S for cc, n in countries.items()},
        "unique": sum(len(v) for v in per_sec_projects.values()) / SPAN_S,
        "top": {f"{rank}. {p}": float(n) for rank, (p, n) in enumerate(top, start=1)},
        "today": today,
        "seconds": len({s for s, _ in good}),
    }
