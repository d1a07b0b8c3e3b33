"""What only the PostgreSQL sink has to prove: `?` translation, one-line errors for a wrong URL, migrations that
two processes starting together do not race on, surviving a dropped connection, and minute-sized rollup writes
(to its history) staying exact."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import psycopg
import pytest

from pypi_pulse.broker import free_port
from pypi_pulse.errors import UserError
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import RollupBucket, WindowRow
from pypi_pulse.sink.postgres_connection import translate_placeholders
from pypi_pulse.sink.schema import MIGRATIONS


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT a FROM t WHERE b = ? AND c < ?", "SELECT a FROM t WHERE b = %s AND c < %s"),
        ("SELECT '?', 'it''s ?' FROM t WHERE x = ?", "SELECT '?', 'it''s ?' FROM t WHERE x = %s"),
        ('SELECT "odd?col" FROM t WHERE x = ?', 'SELECT "odd?col" FROM t WHERE x = %s'),
        ("SELECT 1 -- why?\nWHERE x = ?", "SELECT 1 -- why?\nWHERE x = %s"),
        ("SELECT /* a ? b */ x FROM t WHERE y = ?", "SELECT /* a ? b */ x FROM t WHERE y = %s"),
        ("SELECT x % 2, 'a%' FROM t WHERE p LIKE ?", "SELECT x %% 2, 'a%%' FROM t WHERE p LIKE %s"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_qmark_placeholders_become_psycopg_ones_outside_literals_and_comments(sql, expected):
    assert translate_placeholders(sql) == expected


def _user_error(url: str) -> str:
    with pytest.raises(UserError) as info:
        open_sink(url)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.postgres
def test_a_wrong_url_is_one_line_that_says_how_to_fix_it(postgres_url):
    info = psycopg.conninfo.conninfo_to_dict(postgres_url)
    host, port, user = info["host"], info["port"], info["user"]
    base = f"postgresql://{user}:{info['password']}@{host}:{port}"

    msg = _user_error(f"postgresql://{user}:not-the-password@{host}:{port}/{info['dbname']}")
    assert "rejected the credentials" in msg and "not-the-password" not in msg

    msg = _user_error(f"{base}/no_such_db_pulse")
    assert "no database 'no_such_db_pulse'" in msg and "createdb no_such_db_pulse" in msg

    msg = _user_error(f"postgresql://{user}:{info['password']}@127.0.0.1:{free_port()}/x")
    assert "cannot reach PostgreSQL at 127.0.0.1" in msg and "start the server" in msg

    msg = _user_error(f"{base}/{info['dbname']}?no_such_option=1")
    assert "invalid PostgreSQL URL" in msg


@pytest.mark.postgres
def test_the_cli_prints_one_line_and_exits_2_for_an_unreachable_server():
    url = f"postgresql://pulse:pulse@127.0.0.1:{free_port()}/pulse"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pypi_pulse.cli import main; main()",
            "windows",
            "--sink",
            url,
            "--start",
            "2026-11-20T00:00:00Z",
            "--end",
            "2026-11-20T00:01:00Z",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "1000"},  # no wrapping
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot reach PostgreSQL" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


_OPEN = """
import sys
from pypi_pulse.sink.base import open_sink
open_sink(sys.argv[1], history=sys.argv[2]).close()
"""


@pytest.mark.postgres
def test_processes_starting_together_apply_each_migration_once(pg_url, tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, pg_url, str(tmp_path / "history")], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    with open_sink(pg_url, readonly=True, history=tmp_path / "history") as db:
        assert db.query("SELECT version FROM schema_version ORDER BY version") == [
            (v,) for v in range(1, len(MIGRATIONS) + 1)
        ]


@pytest.mark.postgres
def test_a_dropped_connection_is_reopened_and_the_write_retried(pg_url, tmp_path):
    with open_sink(pg_url, history=tmp_path / "history") as db, psycopg.connect(pg_url, autocommit=True) as admin:
        db.write([WindowRow(100, 1, 1, {"US": 1}, [("a", 1)])], None)
        admin.execute("SELECT pg_terminate_backend(%s)", (db.conn.info.backend_pid,))
        db.write([WindowRow(101, 2, 1, {"US": 2}, [("a", 2)])], None)
        assert [w.downloads for w in db.latest_windows(5)] == [1, 2]
        admin.execute("SELECT pg_terminate_backend(%s)", (db.conn.info.backend_pid,))
        assert db.query("SELECT COUNT(*) FROM windows") == [(2,)]


@pytest.mark.postgres
def test_large_buckets_stay_exact(pg_url, tmp_path):
    """A minute of real traffic touches tens of thousands of (project, dimension, category) keys."""
    day = "2026-11-28"
    buckets = [
        RollupBucket(
            1_795_824_000 + 60 * m,
            {
                (day, f"p{i}", dim, cat): 1 + (i + m) % 5
                for i in range(4000)
                for dim, cat in (("overall", None), ("country", "US"), ("version", f"1.{i % 3}"))
            },
        )
        for m in range(3)
    ]
    expected = Counter()
    for b in buckets:
        for (_d, _p, dim, cat), n in b.counts.items():
            expected[(dim, cat)] += n
    with open_sink(pg_url, history=tmp_path / "history") as db:
        db.write_buckets(buckets)
        db.write_buckets(buckets)
        got = {
            (dim, c): n for dim in ("overall", "country", "version") for _d, _p, c, n in db.daily(None, dim, day, day)
        }
        assert got == dict(expected)
        assert db.history_query("SELECT COUNT(*) FROM daily") == [(12_000,)]
