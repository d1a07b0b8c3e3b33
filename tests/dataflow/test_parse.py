"""Turning a Kafka batch into columns: the Arrow tier, the msgspec tiers and the per-event tier agree event for event,
and a batch the Arrow reader must not take whole goes to the tiers that keep msgspec's rules."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest
from expected_rollups import expected_daily, make_event

from pypi_pulse.dataflow import parse as P
from pypi_pulse.dataflow.partials import BatchPartial, day_of, partial_of
from pypi_pulse.dataflow.rollups import MinuteRollup
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.events import format_bigquery_ts

T0 = 1795219200  # 2026-11-21T00:00:00Z


def events(n: int, seed: int = 7, spread_s: float = 150.0, shuffle: bool = False) -> list[dict]:
    rng = random.Random(seed)
    out = [make_event(rng, T0 + spread_s * i / n) for i in range(n)]
    if shuffle:
        rng.shuffle(out)
    return out


def as_bytes(evs: list[dict]) -> list[bytes]:
    return [
        orjson.dumps({**e, "timestamp": format_bigquery_ts(e["timestamp"]), "url": "/x", "tls_protocol": "TLSv1.3"})
        for e in evs
    ]


def project_counts(p: BatchPartial) -> Counter:
    """(second, project) -> n."""
    return Counter({(s, proj): n for s, ps in p.second_projects.items() for proj, n in ps.counts().items()})


def rollups(p: BatchPartial) -> Counter:
    """{(day, project, dimension, category): n} over the batch's minutes, as the clock would seal this batch alone."""
    out: Counter = Counter()
    for minute, cols in p.minutes.items():
        r = MinuteRollup()
        r.add(cols)
        out.update(r.final(day_of(minute)))
    return out


def summary(p: BatchPartial) -> tuple:
    return (
        dict(p.country_counts),
        dict(project_counts(p)),
        dict(rollups(p)),
        p.max_second,
        p.consumed,
        sorted(reason for _, reason in p.dead),
    )


def by_tier(raw: RawBatch) -> dict[str, tuple]:
    events_, dead = P._decode(raw.values)
    assert not dead
    return {
        "arrow": summary(partial_of(P._columnar(raw))),
        "msgspec": summary(partial_of(P._whole_batch(raw, events_))),
        "per event": summary(partial_of(P._each_event(raw, events_, []))),
    }


@pytest.mark.parametrize("shuffle", [False, True], ids=["in time order", "shuffled"])
def test_every_tier_gives_the_same_counts_as_the_independent_expectation(shuffle):
    evs = events(3000, shuffle=shuffle)
    raw = RawBatch(0, 1, as_bytes(evs), 3000, False, wall=1.0)
    tiers = by_tier(raw)
    assert tiers["arrow"] == tiers["msgspec"] == tiers["per event"]
    rollups = tiers["arrow"][2]
    assert rollups == dict(expected_daily(evs))
    assert sum(tiers["arrow"][0].values()) == 3000
    assert tiers["arrow"][3] == int(T0 + 150 * 2999 / 3000)


def test_unknown_fields_null_records_and_unnormalised_names_are_read_like_msgspec_reads_them():
    rows = [
        {
            "timestamp": "2026-11-21 00:00:01.5 UTC",
            "project": "Zope.Interface",
            "country_code": None,
            "file": None,
            "details": None,
            "extra": {"nested": [1, 2]},
        },
        {
            "timestamp": "2026-11-21 00:00:01.7 UTC",
            "project": "zope_interface",
            "country_code": "XX",
            "file": {"version": None, "type": "sdist", "filename": "z.tar.gz"},
            "details": {
                "installer": None,
                "python": "3.12.1",
                "system": {"name": None},
                "ci": False,
                "distro": {"name": "Ubuntu", "libc": {"lib": "glibc"}},
            },
        },
        {
            "timestamp": "2026-11-21 00:00:02.0 UTC",
            "project": "zope-interface",
            "country_code": "DE",
            "details": {"installer": {"name": "devpi"}, "python": "3.10rc1", "cpu": "aarch64", "ci": True},
        },
    ]
    raw = RawBatch(0, 1, [orjson.dumps(r) for r in rows], 3, False, wall=1.0)
    tiers = by_tier(raw)
    assert tiers["arrow"] == tiers["msgspec"] == tiers["per event"]
    assert tiers["arrow"][1] == {(T0 + 1, "zope-interface"): 2, (T0 + 2, "zope-interface"): 1}
    assert tiers["arrow"][0] == {(T0 + 1, "ZZ"): 1, (T0 + 1, "XX"): 1, (T0 + 2, "DE"): 1}  # two capitals: kept


@pytest.mark.parametrize(
    "odd, reason",
    [
        ({"project": 5}, "invalid event"),  # a number where a name belongs: msgspec's rule, not Arrow's coercion
        ({"details": {"ci": "yes"}}, "invalid event"),
        ({"details": {"installer": "pip"}}, "invalid event"),
        ({"project": ""}, "missing project"),
        ({"timestamp": "2026-11-21T02:00:01.5+02:00"}, None),  # readable, but not by the UTC prefix rule
        ({"timestamp": 1795219201.5}, None),  # epoch seconds: the msgspec tier
    ],
    ids=["numeric project", "string ci", "installer not a record", "empty project", "offset", "epoch"],
)
def test_a_batch_arrow_must_not_take_whole_is_parsed_by_the_other_tiers(odd, reason):
    good = as_bytes(events(200))
    bad = orjson.dumps({"timestamp": "2026-11-21 00:00:01.5 UTC", "project": "numpy", **odd})
    raw = RawBatch(0, 1, good[:100] + [bad] + good[100:], 201, False, wall=1.0)
    assert P._columnar(raw) is None
    p = P.parse_batch(raw)
    reasons = [r for _, r in p.dead]
    if reason is None:
        assert not reasons and sum(p.country_counts.values()) == 201
    else:
        assert len(reasons) == 1 and reasons[0].startswith(reason)
        assert p.dead[0][0] == bad
        assert sum(p.country_counts.values()) == 200


@pytest.mark.parametrize(
    "odd",
    [b"", b'{"timestamp": "2026-11-21 00:00:01 UTC",\n "project": "numpy"}', b"[1, 2]", b"not json"],
    ids=["blank", "two lines", "not an object", "not json"],
)
def test_a_message_that_is_not_one_json_line_never_shifts_the_rows(odd):
    good = as_bytes(events(50))
    raw = RawBatch(0, 1, good[:25] + [odd] + good[25:], 51, False, wall=1.0)
    assert P._columnar(raw) is None
    p = P.parse_batch(raw)
    counted = sum(p.country_counts.values())
    assert counted + len(p.dead) == 51
    assert counted >= 50


def test_values_ending_in_a_newline_still_take_the_arrow_tier():
    evs = events(300)
    raw = RawBatch(0, 1, [v + b"\n" for v in as_bytes(evs)], 300, False, wall=1.0)
    partial = partial_of(P._columnar(raw))
    assert partial is not None
    assert summary(partial)[2] == dict(expected_daily(evs))


def packed(values: list[bytes], size: int) -> RawBatch:
    """The batch the source hands over for messages of `size` events each (PACK_HEADER)."""
    msgs = [b"\n".join(values[i : i + size]) for i in range(0, len(values), size)]
    return RawBatch(0, 1, msgs, len(msgs), False, wall=1.0, pack_sizes=[m.count(b"\n") + 1 for m in msgs])


def test_packed_messages_count_as_the_same_events_sent_one_per_message():
    values = as_bytes(events(1000, shuffle=True))
    one_each = summary(P.parse_batch(RawBatch(0, 1, values, 1000, False, wall=1.0)))
    raw = packed(values, 300)
    assert P._columnar(raw) is not None  # the Arrow tier reads packs as they come
    assert summary(P.parse_batch(raw)) == one_each
    assert raw.n_events == 1000 and raw.event_values() == values


@pytest.mark.parametrize(
    "odd, reason",
    [
        (b"{not json", "invalid event"),
        (b"", "invalid event"),
        (b'{"timestamp": "2026-11-21 00:00:01 UTC"}', "missing project"),
    ],
    ids=["not json", "blank line", "no project"],
)
def test_a_bad_line_inside_a_packed_message_is_dead_lettered_alone(odd, reason):
    values = as_bytes(events(400))
    raw = packed(values[:150] + [odd] + values[150:], 100)
    p = P.parse_batch(raw)
    assert [(v, r.split(":")[0]) for v, r in p.dead] == [(odd, reason)]
    assert sum(p.country_counts.values()) == 400 and p.consumed == 401


def test_shuffled_timestamps_with_mixed_separators_are_read_per_distinct_prefix():
    evs = events(2000, shuffle=True)
    values = as_bytes(evs)
    values = [v.replace(b"-21 ", b"-21T", 1) if i % 3 == 0 else v for i, v in enumerate(values)]  # ISO 'T' on some
    assert sum(b"-21T" in v for v in values) == 667
    raw = RawBatch(0, 1, values, 2000, False, wall=1.0)
    tiers = by_tier(raw)
    assert tiers["arrow"] == tiers["msgspec"] == tiers["per event"]
    assert tiers["arrow"][2] == dict(expected_daily(evs))
