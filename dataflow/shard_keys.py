"""The Bytewax key of each shard's clock, chosen so that Bytewax spreads the shards evenly over its workers.

Bytewax routes a keyed item to worker `h % workers`, where h is Rust's default hash of the key string (SipHash-1-3
with zero keys over the key's bytes and a 0xFF terminator; checked against Bytewax itself by
tests/dataflow/test_shard_keys.py). Keyed by their plain numbers, 8 shards land 6 and 2 on 2 workers, and 5, 2, 1
and none on 4: the busiest worker, not the number of workers, sets the speed of a cluster. So shard i's key is
`"i"` or `"i.n"` with the smallest n for which `h % SPREAD == i % SPREAD`: shard i then lives on worker `i % W`
whenever the W workers divide SPREAD (960: 1 to 6, 8, 10, 12, 15, 16, 20, 24, ... workers), and the keys depend on
the shard alone, not on the cluster's shape, so a recovery store's keyed state matches whatever the shape. With
other worker counts (7, 9, ...) the spread is the hash's.
If Bytewax ever hashed differently, only the spread would change, never a count.
"""

from __future__ import annotations

from functools import cache

SPREAD = 960  # keys route shard i to worker i % W for every W dividing this: 1-6, 8, 10, 12, 15, 16, 20, ...
_MASK = (1 << 64) - 1


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def route_hash(key: str) -> int:
    """Rust's `DefaultHasher` (SipHash-1-3, keys 0 and 0) of a `String`, as Bytewax hashes a state key."""
    data = key.encode() + b"\xff"
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3 ^ m)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3 ^ last)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@cache
def shard_key(shard: int) -> str:
    """The key of a shard's clock (see the module's docstring); about SPREAD hashes to find, once per process."""
    want = shard % SPREAD
    key, n = str(shard), 0
    while route_hash(key) % SPREAD != want:
        key, n = f"{shard}.{n}", n + 1
    return key
