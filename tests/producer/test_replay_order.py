"""File replays go in event-time order whatever the export's order, so that nothing is late or dropped."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess

import orjson
import pytest
from expected_rollups import expected_daily, expected_totals, stored_daily, stored_totals
from pulse_testing import expected_windows, stored_windows

from pypi_pulse import command_lines
from pypi_pulse.events import epoch_second, epoch_seconds, format_bigquery_ts
from pypi_pulse.producer.files import event_time
from pypi_pulse.producer.ordering import time_ordered_lines
from pypi_pulse.producer.synthetic import SyntheticSource

T0 = 1795219170  # 2026-11-20T23:59:30Z


def _rows(n: int, span_s: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = SyntheticSource(seed=seed).events(sorted(T0 + rng.random() * span_s for _ in range(n)))
    rng.shuffle(rows)
    return rows


def _second(line: bytes) -> int:
    return epoch_second(orjson.loads(line)["timestamp"])


def _all(path, **kw) -> list[bytes]:
    return [line for chunk in time_ordered_lines(path, **kw) for line in chunk]


def test_a_shuffled_export_comes_out_sorted_by_second_keeping_file_order_within_a_second(tmp_path):
    rows = _rows(5_000, 120, seed=1)
    lines = [orjson.dumps(r) for r in rows]
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = _all(path, out_size=700)
    assert sorted(out) == sorted(lines)  # nothing lost, nothing added, bytes unchanged
    seconds = [_second(line) for line in out]
    assert seconds == sorted(seconds)
    expected = sorted(lines, key=_second)  # Python's sort is stable: file order within a second
    assert out == expected


def test_every_timestamp_layout_is_ordered_and_lines_without_one_travel_with_their_neighbour(tmp_path):
    t = T0 + 0.25
    layouts = [
        {"timestamp": format_bigquery_ts(t + 30), "project": "a"},  # fast layout
        {"timestamp": format_bigquery_ts(t + 10).replace(" UTC", "Z").replace(" ", "T"), "project": "b"},
        {"timestamp": t + 20, "project": "c"},  # epoch s
        {"timestamp": int((t + 5) * 1_000_000), "project": "d"},  # epoch µs
        {"timestamp": "2026-11-21T01:59:45.000000+02:00", "project": "e"},  # offset: t+15
        {"timestamp": format_bigquery_ts(t + 25)[:19] + " UTC", "project": "f"},  # no fraction
    ]
    lines = [orjson.dumps(r) for r in layouts]
    garbage = b"{not json"
    lines.insert(1, garbage)  # follows the line before it (t+30)
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n\r\n   \r\n")  # CRLF, a blank and a whitespace-only line
    out = _all(path)
    projects = [orjson.loads(line)["project"] if line != garbage else "?" for line in out]
    assert projects == ["d", "b", "e", "c", "f", "a", "?"]


def _line_by_line(data: bytes) -> list[bytes]:
    """What the ordered replay must give, by the plainest means: each line stripped unless it is in BigQuery's
    layout, blank ones dropped, a line without a time given the second of the line before it, a stable sort."""
    out, second = [], None
    for raw in data.split(b"\n"):
        line = raw if raw.startswith(b'{"timestamp":"') and raw[33:34] == b"." else raw.strip()
        if not line:
            continue
        ts = event_time(line)
        second = int(ts // 1) if ts is not None else second
        out.append((second, line))
    first = next((s for s, _ in out if s is not None), 0)
    return [line for _, line in sorted(out, key=lambda sl: first if sl[0] is None else sl[0])]


@pytest.mark.parametrize("budget", [1 << 30, 300], ids=["mapped", "read"])  # within the sort budget, or not
def test_lines_of_every_shape_come_out_as_a_line_by_line_read_would_give_them(tmp_path, budget):
    rng = random.Random(5)
    shapes = [
        lambda: orjson.dumps({"timestamp": format_bigquery_ts(T0 + rng.random() * 90), "project": "p"}),
        lambda: orjson.dumps({"timestamp": format_bigquery_ts(T0 + rng.random() * 90)}) + b" \t",  # kept as it is
        lambda: b"  " + orjson.dumps({"timestamp": T0 + rng.random() * 90, "project": "q"}) + b" ",
        lambda: b"",
        lambda: b"   ",
        lambda: b"{not json",
        lambda: b'{"timestamp":"2026-11-20 23:59:3',  # short
        lambda: b'{"timestamp":"2026-13-20 23:59:30.123456 UTC","project":"r"}',  # fast-looking, not a date
    ]
    for trial in range(40):
        lines = [rng.choice(shapes)() for _ in range(rng.randint(1, 60))]
        data = b"\n".join(lines) + (b"\n" if trial % 2 else b"")  # with and without a newline at the end
        path = tmp_path / f"e{trial}.ndjson"
        path.write_bytes(data)
        assert _all(path, budget_bytes=budget, spill_dir=tmp_path / "spill", out_size=7) == _line_by_line(data)


def test_an_export_larger_than_the_memory_budget_is_sorted_in_spilled_runs_with_the_same_result(tmp_path):
    rows = _rows(6_000, 300, seed=2)
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    spill = tmp_path / "spill"
    in_memory = _all(path)
    spilled = _all(path, budget_bytes=200_000, spill_dir=spill)  # about 20 runs
    assert spilled == in_memory
    assert spill.is_dir() and not any(spill.iterdir())  # runs are temporary files, gone once merged


def test_csv_rows_that_cannot_be_rebuilt_are_handed_over_first_and_the_rest_ordered(tmp_path):
    rows = _rows(300, 60, seed=3)
    path = tmp_path / "e.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "country_code", "project", "file.version"])
        for i, r in enumerate(rows):
            w.writerow([r["timestamp"], r["country_code"], r["project"], r["file"]["version"]])
            if i == 150:
                w.writerow(["only", "two"])
    bad = []
    out = _all(path, on_bad=bad.append)
    assert len(bad) == 1 and "cells" in bad[0].error
    assert len(out) == len(rows)
    seconds = [_second(line) for line in out]
    assert seconds == sorted(seconds)


def _run(export, tmp_path, name, lateness_s=5):
    sink = f"sqlite:///{tmp_path / (name + '.db')}"
    env = dict(os.environ, PYPI_PULSE_LATENESS_SECONDS=str(lateness_s))
    proc = subprocess.run(
        command_lines.replay(export, sink, tmp_path / name, "--json", "--log-level", "info"),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), sink, proc.stderr


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_a_batch_run_of_an_export_in_no_time_order_counts_every_event(tmp_path, fmt):
    """The export spans 120 s in no order and the lateness horizon is 5 s: in time order (the default) every
    event is counted, none even late, and the windows are exact."""
    rows = _rows(20_000, 120, seed=4)
    export = tmp_path / f"export.{fmt}"
    if fmt == "ndjson":
        export.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    else:
        with open(export, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "country_code", "project", "details.python"])
            for r in rows:
                w.writerow(
                    [r["timestamp"], r["country_code"] or "", r["project"], (r["details"] or {}).get("python") or ""]
                )
    summary, sink, _ = _run(export, tmp_path, "ordered")
    assert summary["counted"] == len(rows) and summary["dropped"] == 0 and summary["late"] == 0
    assert stored_windows(sink) == expected_windows(rows)


def test_a_long_batch_run_counts_every_rollup_once_whether_its_blocks_go_to_the_writer_or_not(tmp_path):
    """40 minutes across a UTC midnight with a 60 s horizon: blocks seal while the run streams and go to the block
    writer process (when their merge is done before the end of input, which depends on timing); the rest go in
    from the worker at the end. Whichever way each block goes, every daily row is exact."""
    rows = _rows(120_000, 2400, seed=5)  # several batches a partition (a batch holds up to 20,000 events)
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    summary, sink, _ = _run(export, tmp_path, "long", lateness_s=60)
    assert summary["counted"] == len(rows) and summary["dropped"] == 0
    timed = [dict(r, timestamp=epoch_seconds(r["timestamp"])) for r in rows]
    from pypi_pulse.sink.base import open_sink

    with open_sink(sink, readonly=True) as db:
        assert stored_daily(db) == expected_daily(timed)
        assert stored_totals(db) == expected_totals(expected_daily(timed))


def test_order_file_replays_the_export_as_it_is_with_keys(tmp_path):
    from pypi_pulse.producer.replay import Export

    rows = _rows(2_000, 60, seed=6)
    lines = [orjson.dumps(r) for r in rows]
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks = list(Export(path, order="file", keys=True))
    assert [v for values, _ in chunks for v in values] == lines
    assert [k for _, keys in chunks for k in keys] == [r["project"].encode() for r in rows]
    in_time = [v for values, _ in Export(path) for v in values]
    assert in_time != lines and sorted(in_time) == sorted(lines)


def test_a_gzipped_export_comes_out_as_its_plain_twin(tmp_path):
    import gzip

    rows = _rows(3_000, 90, seed=7)
    data = b"\n".join(orjson.dumps(r) for r in rows) + b"\n"
    plain, packed = tmp_path / "e.ndjson", tmp_path / "e.ndjson.gz"
    plain.write_bytes(data)
    with gzip.open(packed, "wb") as f:
        f.write(data)
    assert _all(packed) == _all(plain)
    assert _all(packed, budget_bytes=300_000, spill_dir=tmp_path / "spill") == _all(plain)
