"""Backfill: synthetic history shape, exact file aggregation, resumability, and no double counting with the
stream (real broker, dataflow and sink), in both orders."""

from __future__ import annotations

import datetime as dt
import random
import statistics
import subprocess
import sys
from collections import Counter, defaultdict

import orjson
import pytest
from expected_rollups import expected_daily, expected_totals, make_event, stored_daily, stored_totals
from pulse_testing import publish, run_flow

from pypi_pulse.errors import UserError
from pypi_pulse.events import format_bigquery_ts
from pypi_pulse.producer.backfill import backfill, first_history
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.queries import backfilled_days

D1 = 1772323200  # 2026-03-01T00:00:00Z
TODAY = dt.date(2026, 11, 28)


def _write_ndjson(path, events):
    with open(path, "wb") as f:
        for e in events:
            f.write(orjson.dumps(dict(e, timestamp=format_bigquery_ts(e["timestamp"]))) + b"\n")


def _day_events(rng, day_start, n):
    return [make_event(rng, day_start + rng.random() * 86399) for _ in range(n)]


def _only(counter: Counter, day: str) -> Counter:
    return Counter({k: v for k, v in counter.items() if k[0] == day})


def test_synthetic_history_is_realistic_consistent_and_resumable(sqlite_url):
    start, end = dt.date(2026, 9, 1), dt.date(2026, 10, 26)  # 8 weeks
    with open_sink(sqlite_url) as db:
        first = backfill(db, "synthetic", start, end, projects=40, daily_downloads=5_000_000, seed=3, today=TODAY)
        assert first.days_written == 56 and first.days_skipped == 0
        rows = db.history_query("SELECT day, project, dimension, category, downloads FROM daily")
        again = backfill(db, "synthetic", start, end, projects=40, daily_downloads=5_000_000, seed=3, today=TODAY)
        assert (again.days_written, again.days_skipped) == (0, 56)  # resumable: completed days are not redone
        forced = backfill(
            db, "synthetic", end, end, projects=40, daily_downloads=5_000_000, seed=3, force=True, today=TODAY
        )
        assert forced.days_written == 1
        assert sorted(db.history_query("SELECT day, project, dimension, category, downloads FROM daily")) == sorted(
            rows
        )
        assert len(backfilled_days(db, start, end)) == 56

    per = defaultdict(Counter)  # (day, project) -> dimension -> downloads
    for day, project, dim, _cat, n in rows:
        per[(day, project)][dim] += n
    for (day, project), dims in per.items():
        assert dims["with_mirrors"] >= dims["overall"] > 0
        for dim in (
            "installer",
            "python_minor",
            "python_major",
            "system",
            "country",
            "cpu",
            "file_type",
            "version",
            "ci",
        ):
            assert dims[dim] == dims["overall"], (day, project, dim)  # every breakdown adds up, as in the stream
    totals = Counter()
    for (day, _p), dims in per.items():
        totals[day] += dims["overall"]
    weekend = [n for d, n in totals.items() if dt.date.fromisoformat(d).weekday() >= 5]
    weekday = [n for d, n in totals.items() if dt.date.fromisoformat(d).weekday() < 5]
    assert statistics.mean(weekend) < 0.8 * statistics.mean(weekday)  # the weekly dip
    spikes = 0
    for project in {p for _d, p in per}:
        series = [per[(d, project)]["overall"] for d in sorted(totals) if dt.date.fromisoformat(d).weekday() < 5]
        spikes += max(series) > 1.4 * statistics.median(series)
    assert spikes >= 20  # releases spike most projects at least once in 8 weeks
    countries = {c for _d, _p, dim, c, _n in rows if dim == "country"}
    assert {"US", "DE", "ZZ"} <= countries and len(countries) > 50
    assert {c for _d, _p, dim, c, _n in rows if dim == "system"} == {"Linux", "Windows", "Darwin", "other", ""}


def test_file_backfill_equals_independent_aggregation(tmp_path, sqlite_url):
    rng = random.Random(11)
    events = _day_events(rng, D1, 1500) + _day_events(rng, D1 + 86400, 1500)
    path = tmp_path / "export.ndjson"
    _write_ndjson(path, events)
    with open(path, "ab") as f:
        f.write(b'{"timestamp": "not a time", "project": "x"}\n{broken\n')
    with open_sink(sqlite_url) as db:
        s = backfill(db, "file:" + str(path), dt.date(2026, 3, 1), dt.date(2026, 3, 3), today=TODAY)
        assert (s.days_written, s.events_read, s.events_rejected) == (2, 3002, 2)
        assert stored_daily(db) == expected_daily(events)
        assert stored_totals(db) == expected_totals(expected_daily(events))
        assert set(backfilled_days(db)) == {"2026-03-01", "2026-03-02"}  # 03-03 had no data: left to the stream


def test_backfill_and_stream_never_double_count(tmp_path, broker, topic, sqlite_url):
    rng = random.Random(5)
    e1, e2, e3 = (_day_events(rng, D1 + i * 86400, 800) for i in range(3))
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    _write_ndjson(tmp_path / "d1.ndjson", e1)
    _write_ndjson(tmp_path / "d3.ndjson", e3)
    with open_sink(sqlite_url) as db:  # backfill first: the stream adds nothing to 03-01 afterwards
        backfill(db, f"file:{tmp_path / 'd1.ndjson'}", dt.date(2026, 3, 1), dt.date(2026, 3, 1), today=TODAY)
    offsets = publish(broker.bootstrap, topic, e1 + e2 + e3)
    run_flow(broker.bootstrap, topic, sqlite_url, end_offsets=offsets)
    # backfill after the stream: 03-03 is replaced, not added to; 03-01 is already done and skipped
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pypi_pulse.cli",
            "backfill",
            "--source",
            f"file:{tmp_path / 'd3.ndjson'}",
            "--start",
            days[0],
            "--end",
            days[2],
            "--sink",
            sqlite_url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    with open_sink(sqlite_url, readonly=True) as db:
        daily, totals = stored_daily(db), stored_totals(db)
        assert db.stats().counters["counted"] == 2400
    want = expected_daily(e1 + e2 + e3)
    for day in days:
        assert _only(daily, day) == _only(want, day), day
    assert totals == expected_totals(want)


def test_only_complete_days_and_clear_errors(tmp_path, sqlite_url):
    with open_sink(sqlite_url) as db, pytest.raises(UserError, match="not a complete UTC day"):
        backfill(db, "synthetic", TODAY - dt.timedelta(days=2), TODAY, today=TODAY)
    cases = [
        (["--start", "2026-02-30", "--end", "2026-03-01"], "is not a date"),
        (["--start", "2026-03-02", "--end", "2026-03-01"], "is after"),
        (["--start", "2026-03-01", "--end", "2999-01-01"], "not a complete UTC day"),
        (
            ["--source", f"file:{tmp_path / 'missing.ndjson'}", "--start", "2026-03-01", "--end", "2026-03-01"],
            "does not exist",
        ),
        (["--source", "ftp", "--start", "2026-03-01", "--end", "2026-03-01"], "source"),
    ]
    for args, message in cases:
        out = subprocess.run(
            [sys.executable, "-m", "pypi_pulse.cli", "backfill", *args, "--sink", sqlite_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_first_history_only_on_an_empty_sink(tmp_path):
    from pypi_pulse.config import load_settings

    s = load_settings(data_dir=tmp_path, rate=50.0)
    summary = first_history(s, days=3)
    assert summary is not None and summary.days_written == 3
    with open_sink(s.sink_url, readonly=True) as db:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        assert max(backfilled_days(db)) == yesterday.isoformat()
    assert first_history(s, days=3) is None  # history exists: `up` leaves it alone


def test_up_backfills_a_first_history_beside_the_live_stream(tmp_path):
    import os
    import signal
    import time

    from pypi_pulse.broker import free_port
    from pypi_pulse.sink import queries

    data = tmp_path / "data"
    env = dict(
        os.environ,
        PYPI_PULSE_BROKER_PORT="0",
        PYPI_PULSE_PORT=str(free_port()),
        PYPI_PULSE_METRICS_PORT=str(free_port()),
        PYPI_PULSE_BACKFILL_DAYS="5",
        # explicit ports: the derived ones (metrics port + 1 and + 2) may be an ephemeral port in use
        PYPI_PULSE_PRODUCER_METRICS_PORT=str(free_port()),
        PYPI_PULSE_DATAFLOW_METRICS_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pypi_pulse.cli", "up", "--data-dir", str(data), "--rate", "100"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    sink = f"sqlite:///{data / 'pypi-pulse.db'}"
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    want = {(yesterday - dt.timedelta(days=i)).isoformat() for i in range(5)}
    try:
        deadline, days, live = time.monotonic() + 240, {}, []
        while time.monotonic() < deadline and not (set(days) == want and live):
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with open_sink(sink, readonly=True) as db:
                    days, live = queries.backfilled_days(db), db.latest_windows(1)
            except Exception:  # not created yet
                pass
            time.sleep(0.2)
        assert set(days) == want and set(days.values()) == {"synthetic"}
        assert live, "the live stream did not reach the sink"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    with open_sink(sink, readonly=True) as db:
        assert queries.top_packages(db, min(want), max(want), limit=1)[0][1] > 0  # the history tabs have data
    assert "history backfill started: 5 days" in out and "history backfill done: 5 days" in out, out
