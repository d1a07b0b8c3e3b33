"""One timestamp reader (`pypi_pulse.events.epoch_seconds`), and the fast paths that must give the same second or
step aside: the cached per-second reading (`epoch_second`), the dataflow's byte-matrix reading of a batch
(dataflow/seconds.py) and the replay's integer reading of line heads (producer/ordering.py)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from pypi_pulse.dataflow import seconds
from pypi_pulse.events import BadTimestamp, epoch_second, epoch_seconds
from pypi_pulse.producer import ordering

TRICKY = [
    "2026-11-20 23:59:50.123456 UTC",
    "2026-11-20 23:59:50 UTC",
    "2026-11-20T23:59:50Z",
    "2026-11-20T23:59:50.5Z",
    "2026-11-20 23:59:50.1 UTC",
    "2026-11-20 23:59:50.123456789 UTC",
    "2026-11-20 23:59:50. UTC",
    "2026-11-20T23:59:50+00:00",
    "2026-11-20T23:59:50.5+0000",
    "2026-11-20 23:59:50 +0000",
    "2026-11-20 23:59:50",
    "2026-11-20T23:59:50.25",
    "2026-11-20 23:59:50.5+01:00",
    "2026-11-20T23:59:50-05:00",
    "2024-02-29 12:00:00 UTC",
    "2100-02-29 12:00:00 UTC",
    "2026-02-30 00:00:00 UTC",
    "2026-13-01 00:00:00 UTC",
    "2026-11-20 24:00:00 UTC",
    "2026-11-20 23:60:00 UTC",
    "2026-11-20 23:59:50xyz UTC",
    "2026-11-20 23:59:50.1.2",
    "2026-11-20 23:59:50.\u0663 UTC",
    "1970-01-01 00:00:00 UTC",
    "2026-11-20",
    "not a time at all, at all",
    "",
]


def _reference(ts: str):
    try:
        return int(epoch_seconds(ts) // 1)
    except BadTimestamp:
        return "bad"


@pytest.mark.parametrize("ts", TRICKY)
def test_the_cached_second_is_the_full_readings_second(ts):
    try:
        got = epoch_second(ts)
    except BadTimestamp:
        got = "bad"
    assert got == _reference(ts)


@pytest.mark.parametrize("ts", TRICKY)
def test_the_dataflows_byte_matrix_reading_agrees_or_steps_aside(ts):
    try:
        got = seconds._seconds_by_prefix([ts] * 3)
    except BadTimestamp:
        got = "bad"
    if got is None:  # not its layout: each timestamp is read by `epoch_second`
        return
    want = _reference(ts)
    assert (got.tolist() if isinstance(got, np.ndarray) else got) == ([want] * 3 if want != "bad" else "bad")


@pytest.mark.parametrize("ts", TRICKY)
def test_the_replays_line_head_reading_agrees_or_steps_aside(ts):
    line = orjson.dumps({"timestamp": ts, "project": "p"})
    heads = np.zeros((1, ordering._FAST_LEN), np.uint8)
    head = np.frombuffer(line[: ordering._FAST_LEN], np.uint8)
    heads[0, : len(head)] = head
    secs, slow = ordering._fast_seconds(heads)
    if len(slow):  # not its layout: the line is read by `files.event_time`, the full reading
        return
    assert int(secs[0]) == _reference(ts)


def test_the_bigquery_readers_vectorised_text_is_format_bigquery_ts():
    """The BigQuery reader writes a result's timestamps with Arrow in one call; the text must be the one
    `format_bigquery_ts` (and so every reader above) gives."""
    import pyarrow as pa

    from pypi_pulse.events import format_bigquery_ts
    from pypi_pulse.producer.bigquery import table_columns
    from pypi_pulse.producer.bigquery_query import COLUMNS

    micros = [1795219190_123456, 1795219190_000000, 1795219199_999999, 951782400_000001, 0]
    columns = {name: pa.array([None] * len(micros), pa.string()) for name in COLUMNS if name != "timestamp"}
    table = pa.table({"timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")), **columns})
    got_micros, text, _others = table_columns(table)
    assert got_micros == micros
    assert text == [format_bigquery_ts(us / 1e6) for us in micros]
    assert [epoch_second(t) for t in text] == [us // 1_000_000 for us in micros]
