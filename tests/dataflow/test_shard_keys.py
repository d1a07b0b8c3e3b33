"""Shard keys spread the shards evenly over Bytewax's workers (dataflow/shard_keys.py), checked against Bytewax's
own routing: a keyed step's items are output on the worker that holds their key."""

from __future__ import annotations

import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from pypi_pulse.dataflow.shard_keys import SPREAD, route_hash, shard_key


class _Echo(StatefulLogic):
    def on_item(self, value):
        return [value], StatefulLogic.RETAIN

    def snapshot(self):
        return None


class _Where(DynamicSink):
    """Records which worker each key's items are output on (a DynamicSink writes where the items are)."""

    def __init__(self):
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def build(self, step_id, worker_index, worker_count):
        sink = self

        class Part(StatelessSinkPartition):
            def write_batch(self, items):
                with sink.lock:
                    sink.seen.update({key: worker_index for key, _ in items})

        return Part()


def _bytewax_workers_of(keys: list[str], workers: int) -> dict[str, int]:
    flow = Dataflow("where")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    where = _Where()
    op.output("out", op.stateful("echo", keyed, lambda _resume: _Echo()), where)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return where.seen


def test_bytewax_routes_by_the_hash_the_shard_keys_are_chosen_with():
    keys = [f"{i}.{n}" for i in range(40) for n in range(5)] + ["numpy", "0", "ünïcode-ß", "x" * 40]
    assert _bytewax_workers_of(keys, 8) == {k: route_hash(k) % 8 for k in keys}


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_eight_shards_spread_evenly_over_two_three_and_four_workers(workers):
    keys = [shard_key(s) for s in range(8)]
    where = _bytewax_workers_of(keys, workers)
    assert [where[k] for k in keys] == [s % workers for s in range(8)]


def test_a_shards_key_depends_on_the_shard_alone():
    shards = [*range(40), SPREAD + 1, 2 * SPREAD + 7]
    assert len({shard_key(s) for s in shards}) == len(shards)
    assert all(route_hash(shard_key(s)) % SPREAD == s % SPREAD for s in shards)
    assert shard_key(5) == shard_key(5) and shard_key(5).split(".")[0] == "5"
