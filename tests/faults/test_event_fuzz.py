"""The dataflow's batch parser on hostile input: whatever a Kafka batch holds (arbitrary bytes, arbitrary JSON,
valid events with one field mutated), packed or not, parsing never raises and every event is either counted in a
window or dead-lettered: counted + dead-lettered == events in the batch."""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypi_pulse.dataflow.parse import parse_batch
from pypi_pulse.dataflow.source import RawBatch

VALID = {
    "timestamp": "2026-11-20 08:00:01.123456 UTC",
    "country_code": "US",
    "project": "requests",
    "file": {
        "filename": "requests-2.32.3-py3-none-any.whl",
        "project": "requests",
        "version": "2.32.3",
        "type": "bdist_wheel",
    },
    "details": {
        "installer": {"name": "pip"},
        "python": "3.12.1",
        "system": {"name": "Linux"},
        "cpu": "x86_64",
        "ci": None,
    },
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# where a mutation lands: every field the parser reads, and nested ones
PATHS = [
    ("timestamp",),
    ("country_code",),
    ("project",),
    ("file",),
    ("file", "project"),
    ("file", "version"),
    ("details",),
    ("details", "installer"),
    ("details", "installer", "name"),
    ("details", "python"),
    ("details", "system"),
    ("details", "ci"),
]
timestamps = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            1e18,
            1e300,
            -1.0,
            0,
            "9999-12-31 23:59:59 UTC",
            "2015-06-01 00:00:00 UTC",
            "10000-01-01",
            "2026-11-20T08:00:01Z",
            "2026-11-20 08:00:01.5+02:00",
            "",
            " UTC",
            "\ufeff2026-11-20",
        ]
    ),
    st.text(max_size=40),
)


def _set(event: dict, path: tuple, value) -> bytes:
    e = orjson.loads(orjson.dumps(event))
    node = e
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return _dumps(e)


def _dumps(value) -> bytes:
    """JSON as any producer might write it: integers beyond 64 bits, NaN and Infinity included."""
    return json.dumps(value).encode()


@st.composite
def mutated(draw) -> bytes:
    path = draw(st.sampled_from(PATHS))
    value = draw(timestamps if path == ("timestamp",) else json_values)
    if path == ("project",) and draw(st.booleans()):
        value = "p" * draw(st.integers(0, 300))  # around the name-length bound
    return _set(VALID, path, value)


event_values = st.one_of(
    st.just(orjson.dumps(VALID)),
    mutated(),
    json_values.map(_dumps),
    st.binary(max_size=200),
)


@st.composite
def batches(draw) -> RawBatch:
    values = draw(st.lists(event_values, min_size=1, max_size=40))
    if not draw(st.booleans()):
        return RawBatch(0, 1, values, len(values), False)
    # packed: consecutive events share a message, one per line (a value holding a newline is several lines then,
    # as it would be on the wire)
    packs, sizes, i = [], [], 0
    while i < len(values):
        k = draw(st.integers(1, 8))
        message = b"\n".join(values[i : i + k])
        packs.append(message)
        sizes.append(message.count(b"\n") + 1)
        i += k
    return RawBatch(0, 1, packs, len(packs), False, pack_sizes=sizes)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_every_event_of_any_batch_is_counted_or_dead_lettered(raw):
    p = parse_batch(raw)
    counted = sum(p.country_counts.values())
    assert counted + len(p.dead) == raw.n_events == p.consumed
    assert sum(len(c) for c in p.second_projects.values()) == counted
    for original, reason in p.dead:
        assert isinstance(original, bytes) and reason and len(reason) < 1000
    for (second, country), _ in p.country_counts.items():
        assert 1_451_606_400 <= second  # 2016-01-01: nothing earlier is ever counted
        assert isinstance(country, str) and len(country) == 2


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.sampled_from([1e18, 1e300, "9999-12-31 23:59:59 UTC", "2015-12-31 23:59:59 UTC", 10**25]),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 50),
)
def test_out_of_bounds_times_among_valid_events_are_dead_lettered_with_their_reason(bad_times, n_good):
    good = [orjson.dumps(VALID)] * n_good
    bad = [_set(VALID, ("timestamp",), t) for t in bad_times]
    raw = RawBatch(0, 1, good + bad, n_good + len(bad), False)
    p = parse_batch(raw)
    assert sum(p.country_counts.values()) == n_good
    reasons = sorted(r.split(":")[0] for _, r in p.dead)
    expected = sorted(
        "timestamp_before_2016" if str(t).startswith("2015") else "timestamp_in_future" for t in bad_times
    )
    assert reasons == expected
