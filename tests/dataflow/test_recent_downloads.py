"""The per-block downloads trending reads (dataflow/blocks.py, sink/recent.py): the same per-project counts from a
block in every form the clock hands over, written idempotently, and nothing for a bucket that spans hours."""

from __future__ import annotations

import random
from collections import Counter

import orjson
from expected_rollups import MIRRORS, make_event, norm

from pypi_pulse.dataflow.blocks import BlockOutput
from pypi_pulse.dataflow.parse import parse_batch
from pypi_pulse.dataflow.rollups import MinuteRollup
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket
from pypi_pulse.sink.recent import overall_by_project

BLOCK = 1772323200 + 14 * 3600  # 2026-03-01T14:00:00Z


def _block_minutes(events):
    part = parse_batch(RawBatch(0, 1, [orjson.dumps(e) for e in events], 0, True))
    assert not part.dead
    minutes = []
    for _minute, cols in sorted(part.minutes.items()):
        m = MinuteRollup()
        m.add(cols)
        minutes.append(m)
    return minutes


def _truth(events) -> dict:
    """Overall downloads per project: every event but mirror downloads, names PEP 503 normalised."""
    inst = lambda e: ((e.get("details") or {}).get("installer") or {}).get("name")  # noqa: E731
    return dict(Counter(norm(e["project"]) for e in events if inst(e) not in MIRRORS))


def test_every_form_of_a_block_gives_the_same_exact_counts():
    rng = random.Random(5)
    events = [make_event(rng, BLOCK + rng.random() * 599) for _ in range(3000)]
    minutes = _block_minutes(events)
    merged = MinuteRollup.merged_final(minutes, "2026-03-01")
    truth = _truth(events)
    assert overall_by_project(merged) == truth
    assert overall_by_project(merged.as_dict()) == truth


def test_a_resent_block_writes_the_same_rows_and_a_multi_hour_bucket_none(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    rng = random.Random(6)
    events = [make_event(rng, BLOCK + rng.random() * 599) for _ in range(500)]
    block = RollupBucket(BLOCK, MinuteRollup.merged_final(_block_minutes(events), "2026-03-01"), span=600)
    day_bucket = RollupBucket(BLOCK + 600, {("2026-03-01", "numpy", "overall", None): 7}, span=7200)
    BlockOutput(url, None, recent_keep_s=48 * 3600, totals_keep_days=400).write([block, day_bucket])
    # a restarted dataflow seals and writes the same blocks again
    BlockOutput(url, None, recent_keep_s=48 * 3600, totals_keep_days=400).write([block, day_bucket])
    with open_sink(url, readonly=True) as db:
        history = dict(
            db.history_query("SELECT project, SUM(downloads) FROM daily WHERE dimension = 'overall' GROUP BY 1")
        )
        assert history == dict(Counter(_truth(events)) + Counter({"numpy": 7}))  # each block once
        rows = dict(db.query("SELECT project, downloads FROM recent_downloads WHERE block_end = ?", (BLOCK + 600,)))
        assert rows == _truth(events)
        assert db.query("SELECT block_end, downloads FROM block_totals") == [(BLOCK + 600, sum(rows.values()))]
        assert db.query("SELECT COUNT(*) FROM recent_downloads WHERE block_end <> ?", (BLOCK + 600,)) == [(0,)]


def test_a_blocks_shard_parts_add_up_once_whatever_their_order_and_spacing(tmp_path):
    """A sharded dataflow writes a block as its shards' parts: far apart in a fast replay (the earlier part's
    per-project rows may be pruned by then) and perhaps twice (a resend): the block's total is each part once."""
    from pypi_pulse.sink import recent

    with open_sink(f"sqlite:///{tmp_path / 's.db'}") as db:
        end = BLOCK + 600
        recent.record_blocks(db, [(end, 0, {"numpy": 7, "boto3": 2})])
        recent.prune(db, end + 10 * 3600, recent_keep_s=3600, totals_keep_s=400 * 86400)  # its rows go, not its total
        assert db.query("SELECT COUNT(*) FROM recent_downloads") == [(0,)]
        recent.record_blocks(db, [(end, 3, {"attrs": 5})])
        recent.record_blocks(db, [(end, 3, {"attrs": 5})])  # the same part again
        assert db.query("SELECT block_end, downloads FROM block_totals") == [(end, 14)]
