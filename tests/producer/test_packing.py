"""Packed messages: the fast cut (sums and bisection) makes exactly the packs the one-event-at-a-time rule makes."""

from __future__ import annotations

import random

import pytest

from pypi_pulse.bounds import DEFAULT_MAX_EVENT_BYTES
from pypi_pulse.events import PACK_MAX_BYTES
from pypi_pulse.producer.publisher import Publisher


def _reference_packs(values: list[bytes], per_pack: int) -> list[list[bytes]]:
    """The rule: a pack takes events while it holds fewer than `per_pack` and stays within PACK_MAX_BYTES joined;
    an event larger than that goes alone."""
    out, pack, size = [], [], 0
    for value in values:
        if pack and (len(pack) >= per_pack or size + len(value) > PACK_MAX_BYTES):
            out.append(pack)
            pack, size = [], 0
        pack.append(value)
        size += len(value) + 1
    if pack:
        out.append(pack)
    return out


class _Recorder(Publisher):
    def __init__(self):  # no Kafka: only the cutting is under test
        self.packs: list[list[bytes]] = []
        self._partitions = 1
        self.max_event_bytes = DEFAULT_MAX_EVENT_BYTES
        self.delivery = type("NoKafka", (), {"poll": lambda self, timeout: 0})()

    def _produce_pack(self, pack: list[bytes]) -> None:
        self.packs.append(list(pack))

    def send(self, value: bytes, key) -> None:
        self.packs.append(["alone", value])


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_cut_makes_the_same_packs_as_the_rule(seed):
    rng = random.Random(seed)
    big = seed % 3 == 0  # events near and over the byte limit
    values = [
        b"x" * (rng.choice([10, 200_000, 300_000, 600_000]) if big else rng.randrange(1, 2_000))
        for _ in range(rng.randrange(1, 3_000))
    ]
    per_pack = rng.choice([1, 2, 7, 100, 740, 1_000])
    recorder = _Recorder()
    recorder._cut_into_packs(values, per_pack)
    assert recorder.packs == _reference_packs(values, per_pack)


def test_an_event_spanning_lines_goes_alone_in_its_place_and_the_rest_are_packed_around_it():
    values = [b"a", b"b", b'{"x":\n1}', b"c", b"d", b"e", b"f\ng"]
    recorder = _Recorder()
    recorder.send_packed(values, 2)
    assert recorder.packs == [[b"a", b"b"], ["alone", b'{"x":\n1}'], [b"c", b"d"], [b"e"], ["alone", b"f\ng"]]
