"""Synthetic traffic looks like PyPI's: real popularity and country shares, valid rows, a weekly rhythm, reproducible."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from pypi_pulse.events import DECODER, epoch_second
from pypi_pulse.producer.synthetic import SyntheticSource, rhythm

T0 = 1795219190


def test_same_seed_same_events_and_every_event_is_a_valid_row():
    ts = [T0 + i * 0.001 for i in range(5000)]
    a = SyntheticSource(seed=9).encoded(ts)
    b = SyntheticSource(seed=9).encoded(ts)
    assert a == b
    assert SyntheticSource(seed=10).encoded(ts) != a
    for value, key in a:
        ev = DECODER.decode(value)
        assert ev.project == key.decode() == ev.file.project
        assert epoch_second(ev.timestamp) in (T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5)


def test_popularity_and_country_shares_follow_the_reference_data():
    events = SyntheticSource(seed=1).events([T0 + i * 1e-5 for i in range(40_000)])
    projects = Counter(e["project"] for e in events)
    countries = Counter(e["country_code"] for e in events)
    top = [p for p, _ in projects.most_common(5)]
    assert "boto3" in top  # the most downloaded project in the reference list
    assert 0.74 < countries["US"] / len(events) < 0.82  # 78.2% in the reference data
    assert len(countries) > 100
    installers = Counter((e["details"] or {}).get("installer", {}).get("name") for e in events)
    assert installers["pip"] > installers["uv"] > installers["poetry"] > 0 and installers["bandersnatch"] > 0
    assert any(e["details"] is None for e in events)  # unknown user agents, as in BigQuery


def test_weekends_are_quieter_than_weekdays():
    saturday = datetime(2026, 11, 21, 15, tzinfo=UTC).timestamp()
    tuesday = datetime(2026, 11, 24, 15, tzinfo=UTC).timestamp()
    assert rhythm(saturday) < 0.8 * rhythm(tuesday)
    src = SyntheticSource(seed=2)
    assert len(src.timestamps(saturday, saturday + 10, 1000)) < len(src.timestamps(tuesday, tuesday + 10, 1000))


def test_long_tail_holds_pypis_share_and_distinct_projects_per_second():
    """PyPI's shape: ~23% of downloads beyond the top 15,000 projects, ~19,000 distinct projects in a second of
    66,000 events (shared/known-facts.md)."""
    from pypi_pulse.producer import popularity as pop

    keys = [k.decode() for _, k in SyntheticSource(seed=3).encoded([T0 + i / 66_000 for i in range(66_000)])]
    top = set(pop.packages().values)
    outside = [k for k in keys if k not in top]
    assert 0.22 < len(outside) / len(keys) < 0.24
    assert all(k.startswith("pulse-tail-") for k in outside)
    assert 18_000 < len(set(keys)) < 20_000
    ranked = Counter(keys).most_common(3)
    assert ranked[0][0] == "boto3"  # the named top keeps its real weights: its leader stays first


def test_tail_draws_follow_the_tail_weights():
    import random

    import numpy as np

    from pypi_pulse.producer import popularity as pop

    rng = random.Random(4)
    draws = np.bincount([pop.tail_index(rng.random()) for _ in range(200_000)], minlength=pop.TAIL_PROJECTS)
    w = pop.tail_weights()
    assert abs(w.sum() - 1) < 1e-9 and len(w) == pop.TAIL_PROJECTS
    for lo, hi in ((0, 1000), (1000, 50_000), (50_000, 300_000), (300_000, pop.TAIL_PROJECTS)):
        assert abs(draws[lo:hi].sum() / 200_000 - w[lo:hi].sum()) < 0.005
    assert pop.tail_name(41) == "pulse-tail-000041"


def test_a_stream_held_up_catches_up_a_tick_at_a_time_and_misses_no_time():
    """A producer held up for 10 s (its publisher waiting on a broker) gets the events of those 10 s in batches of
    a tick each, not in one batch as large as the hold-up, and every moment of the 10 s has its events."""
    from pypi_pulse.producer.files import event_time
    from pypi_pulse.producer.synthetic import stream

    now = [float(T0)]
    batches = stream(SyntheticSource(seed=5), rate=2000, tick_s=0.05, clock=lambda: now[0])
    now[0] += 0.05
    next(batches)
    start = now[0]
    now[0] += 10.0  # the hold-up
    spans: list[tuple[float, float, int]] = []  # each batch's first and last event time, and its events
    while not spans or spans[-1][1] < now[0] - 0.05:  # until caught up
        assert len(spans) < 200, "200 ticks did not cover the hold-up"
        times = [event_time(value) for value, _key in next(batches)]
        assert times and None not in times
        spans.append((min(times), max(times), len(times)))
    assert len(spans) == 200 and max(hi - lo for lo, hi, _ in spans) < 0.05, spans[:3]
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:]))  # in time order, none repeated
    assert start <= spans[0][0] < start + 0.05 and spans[-1][1] < now[0]
    expected = 2000 * rhythm(start) * 10
    assert abs(sum(n for _, _, n in spans) - expected) < 0.05 * expected
