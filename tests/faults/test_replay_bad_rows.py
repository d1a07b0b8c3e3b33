"""One bad row never aborts a file replay: `pypi-pulse run --source file:...` stores every good row exactly and
dead-letters (and counts) each bad one, whatever it is: an out-of-range number, a line larger than Kafka takes, a
CSV row that is not UTF-8 or holds a 200 KB field; a gzip export truncated part-way is replayed up to the damage
(and the damage reported); a UTF-8 byte-order mark does not cost the first event. Truth is computed here, from the
rows written, with plain datetime arithmetic."""

from __future__ import annotations

import gzip
import random
import zlib
from collections import Counter
from datetime import UTC, datetime

import orjson
from pulse_testing import expected_windows, stored_windows
from replay_faults_testing import batch_run, spread_events

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp()
PROJECTS = ["requests", "numpy", "boto3", "Flask", "zope.interface"]


def _rows(n: int, seed: int = 3) -> list[dict]:
    return spread_events(T0, n, 30, PROJECTS, random.Random(seed))


def _run(export, tmp_path, expect_rc: int = 0) -> tuple[dict, str, str]:
    sink = f"sqlite:///{tmp_path / 'replay.db'}"
    summary, stderr = batch_run(export, sink, tmp_path / "data", expect_rc)
    return summary, sink, stderr


def _assert_exact(sink: str, good: list[dict], summary: dict, bad: int) -> None:
    assert stored_windows(sink) == expected_windows(good)
    assert summary["counted"] == len(good)
    assert summary["dead_lettered"] == bad
    assert summary["events_read"] == len(good) + bad
    assert summary["dropped"] == 0 and summary["failed"] == 0


def _ndjson(path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_a_numeric_timestamp_of_1e300_is_dead_lettered_and_the_rest_stored(tmp_path):
    good = _rows(500)
    lines = [orjson.dumps(r) for r in good]
    lines.insert(200, b'{"timestamp": 1e300, "project": "requests", "country_code": "US"}')
    _ndjson(tmp_path / "export.ndjson", lines)
    summary, sink, _ = _run(tmp_path / "export.ndjson", tmp_path)
    _assert_exact(sink, good, summary, bad=1)


def test_a_line_larger_than_kafka_takes_is_dead_lettered_and_the_rest_stored(tmp_path):
    good = _rows(500)
    lines = [orjson.dumps(r) for r in good]
    huge = dict(good[0], url="/" + "x" * 1_200_000)  # over the producer's message.max.bytes (1,000,000)
    lines.insert(100, orjson.dumps(huge))
    _ndjson(tmp_path / "export.ndjson", lines)
    summary, sink, _ = _run(tmp_path / "export.ndjson", tmp_path)
    _assert_exact(sink, good, summary, bad=1)


def _csv(path, rows: list[dict], odd: dict[int, list[bytes]]) -> None:
    """The rows as CSV bytes; `odd` puts raw rows (bytes) before the row of that index."""
    out = [b"timestamp,country_code,project,url"]
    for i, r in enumerate(rows):
        out += odd.get(i, [])
        out.append(f"{r['timestamp']},{r['country_code'] or ''},{r['project']},/x".encode())
    path.write_bytes(b"\r\n".join(out) + b"\r\n")


def _csv_expected(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in ("timestamp", "country_code", "project")} for r in rows]


def test_a_csv_row_with_a_latin1_byte_is_dead_lettered_and_the_rest_stored(tmp_path):
    good = _rows(400)
    bad_row = f"{good[5]['timestamp']},DE,caf\xe9-tools,/x".encode("latin-1")
    _csv(tmp_path / "export.csv", good, {300: [bad_row]})
    summary, sink, _ = _run(tmp_path / "export.csv", tmp_path)
    _assert_exact(sink, _csv_expected(good), summary, bad=1)


def test_a_csv_row_with_a_200kb_field_is_dead_lettered_and_the_rest_stored(tmp_path):
    good = _rows(400)
    bad_row = f"{good[5]['timestamp']},DE,requests,/{'y' * 200_000}".encode()
    _csv(tmp_path / "export.csv", good, {10: [bad_row]})
    summary, sink, _ = _run(tmp_path / "export.csv", tmp_path)
    _assert_exact(sink, _csv_expected(good), summary, bad=1)


def test_a_truncated_gzip_keeps_and_counts_every_event_before_the_damage(tmp_path):
    rows = _rows(40_000, seed=5)
    raw = b"\n".join(orjson.dumps(r) for r in rows) + b"\n"
    whole = gzip.compress(raw)
    cut = whole[: len(whole) * 2 // 3]
    (tmp_path / "export.ndjson.gz").write_bytes(cut)
    # truth: what zlib itself can decompress from the damaged file
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    *complete, partial = readable.split(b"\n")
    good = [orjson.loads(line) for line in complete]
    assert 0 < len(good) < len(rows)
    summary, sink, stderr = _run(tmp_path / "export.ndjson.gz", tmp_path, expect_rc=2)
    # a line cut in the middle by the damage is an event too: dead-lettered as invalid
    _assert_exact(sink, good, summary, bad=1 if partial else 0)
    assert "export.ndjson.gz" in summary["input_error"]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "input damaged" in lines[0]


def test_a_utf8_byte_order_mark_does_not_cost_the_first_event(tmp_path):
    good = _rows(300)
    _ndjson(tmp_path / "export.ndjson", [b"\xef\xbb\xbf" + orjson.dumps(good[0])] + [orjson.dumps(r) for r in good[1:]])
    summary, sink, _ = _run(tmp_path / "export.ndjson", tmp_path)
    _assert_exact(sink, good, summary, bad=0)
    assert Counter(c for w in stored_windows(sink).values() for c in w["countries"])["XK"] > 0  # kept as logged
