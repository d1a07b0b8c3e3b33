"""Read connections for long-lived readers (each server worker, the exporter), kept and shared instead of opened
per request.

PostgreSQL reads borrow a connection from a `psycopg_pool` pool for each query, so a process holds at most
`max_size` connections however many requests it serves, and a connection that died with a server restart is
replaced by the pool instead of failing a request. SQLite needs no pool (opening a file is cheap, but a new
connection starts with a cold page cache): each thread keeps one read-only connection, reopened when the file is
replaced or removed, since an open connection would go on reading the old file.

The rollup history (sink/history.py) is read by one DuckDB reader per pool, shared by every sink the pool hands
out (the API's and the dashboard's): it is thread-safe, and its file listing, footers and in-memory series
(sink/history_series.py, up to `history_series_bytes`) are then read and held once per process, not once per
thread or per user. The Live feed's sink has a reader of its own: a history question holds the shared reader's lock
for as long as it scans (seconds, the first time), and the once-per-second Live refresh, which asks the history what
today's rollups cover, must not wait for it.

The pool is made after a server forks (in each worker), never before: a connection must not be shared by two
processes.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TypeVar

from pypi_pulse.config_serving import DEFAULT_HISTORY_SERIES_MIB
from pypi_pulse.errors import UserError
from pypi_pulse.sink.base import Sink, default_history
from pypi_pulse.sink.retry import SinkUnavailable, one_line
from pypi_pulse.sink.sqlite import SQLiteSink

if TYPE_CHECKING:
    from pypi_pulse.sink.history_reader import HistoryReader

T = TypeVar("T")


class ReadPool:
    def __init__(
        self,
        url: str,
        *,
        history: Optional[str | Path] = None,
        max_size: int = 4,
        wait_s: float = 10.0,
        check_timeout_s: float = 2.0,
        history_series_bytes: int = DEFAULT_HISTORY_SERIES_MIB * 2**20,
    ):
        self.url = url
        self.history_location = history
        self._history_reader: Optional[HistoryReader] = None
        self._live_history_reader: Optional[HistoryReader] = None
        self.history_series_bytes = history_series_bytes
        self._history_lock = threading.Lock()
        self.wait_s = wait_s
        self.check_timeout_s = check_timeout_s
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._local = threading.local()
        self._pool = None
        self._schema_seen = False
        if self.postgres:
            self._pool = _postgres_pool(url, max_size)

    def lease(self, live: bool = False) -> Sink:
        """A read-only sink for one request; its `close()` gives it back and keeps the connection. `live`: it reads
        the history through the Live feed's reader, not the shared one."""
        if self.postgres:
            if not self._schema_seen:
                from pypi_pulse.sink.postgres_connection import require_schema

                self._borrow(lambda conn: require_schema(conn, self.url))
                self._schema_seen = True
            sink = _pooled_postgres_class()(self)
            sink.share_history(self.live_history_reader() if live else self.history_reader())
            return sink
        return self._thread_sqlite()

    def history_reader(self) -> HistoryReader:
        """The pool's one reader of the history, shared by the API and the dashboard, made on first use."""
        with self._history_lock:
            if self._history_reader is None:
                self._history_reader = self._new_history_reader(self.history_series_bytes)
            return self._history_reader

    def live_history_reader(self) -> HistoryReader:
        """The Live feed's reader: it only asks what the history covers, so it holds no series."""
        with self._history_lock:
            if self._live_history_reader is None:
                self._live_history_reader = self._new_history_reader(0)
            return self._live_history_reader

    def _new_history_reader(self, series_bytes: int) -> HistoryReader:
        from pypi_pulse.sink.history import History
        from pypi_pulse.sink.history_reader import HistoryReader

        return HistoryReader(History(self.history_location or default_history(self.url)), series_bytes=series_bytes)

    def opener(self, url: str, *, readonly: bool = True) -> Sink:
        """An `open_sink`-shaped opener for dashboard.reader.SinkReader: pooled PostgreSQL, or a connection of the
        reader's own for SQLite (it serves every thread under its lock); either reads the history through the pool's
        shared reader."""
        return self._opener(url, readonly, live=False)

    def live_opener(self, url: str, *, readonly: bool = True) -> Sink:
        """`opener` for the Live feed: the same sink, reading the history through the Live feed's own reader."""
        return self._opener(url, readonly, live=True)

    def _opener(self, url: str, readonly: bool, live: bool) -> Sink:
        if self.postgres:
            return self.lease(live)
        sink = _OwnSQLite(url, readonly=readonly)  # a missing or unusable file: its one-line UserError
        sink.share_history(self.live_history_reader() if live else self.history_reader())
        return sink

    def check(self) -> Optional[str]:
        """None when the sink answers a trivial query now, else why not (one line): what /readyz reports."""
        try:
            if self.postgres:
                self._borrow(
                    lambda conn: conn.execute("SELECT 1 FROM schema_version LIMIT 1").fetchall(),
                    timeout=self.check_timeout_s,
                )
            else:
                path = _sqlite_path(self.url)
                if not path.exists():
                    return f"no sink at {path}"
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=self.check_timeout_s)
                try:
                    db.execute("SELECT 1 FROM schema_version LIMIT 1").fetchall()
                finally:
                    db.close()
        except Exception as exc:
            return _reason(exc)
        return None

    def _borrow(self, fn: Callable, timeout: Optional[float] = None):
        """Run fn on a pooled connection; once more on a fresh one if it broke under it (a server restart)."""
        import psycopg
        from psycopg_pool import PoolTimeout

        assert self._pool is not None
        for attempt in (1, 2):
            try:
                with self._pool.connection(timeout=timeout or self.wait_s) as conn:
                    try:
                        return fn(conn)
                    except psycopg.OperationalError:
                        if attempt == 2 or not conn.broken:
                            raise
            except PoolTimeout as exc:
                raise SinkUnavailable(
                    f"no PostgreSQL connection within {timeout or self.wait_s:g} s ({one_line(exc)})"
                ) from None
        raise AssertionError("unreachable")

    def _thread_sqlite(self) -> Sink:
        path = _sqlite_path(self.url)
        held: Optional[_ThreadSQLite] = getattr(self._local, "sink", None)
        try:
            ident = os.stat(path).st_ino
        except OSError:
            ident = None
        if held is not None and held.ident != ident:
            held.really_close()
            held = self._local.sink = None
        if held is None:
            held = _ThreadSQLite(self.url, readonly=True)  # raises the one-line UserError of a missing file
            held.ident = ident
            held.share_history(self.history_reader())
            self._local.sink = held
        return held

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        for reader in (self._history_reader, self._live_history_reader):
            if reader is not None:
                reader.close()


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, UserError) else one_line(exc)


def _postgres_pool(url: str, max_size: int):
    from psycopg_pool import ConnectionPool

    from pypi_pulse.sink.postgres_connection import CONNECT_TIMEOUT_S, IntegralNumericLoader, describe

    describe(url)  # a malformed URL is a one-line error here, not the pool's retries

    def configure(conn) -> None:
        conn.adapters.register_loader("numeric", IntegralNumericLoader)
        conn.execute("SET default_transaction_read_only = on")

    kwargs = {"autocommit": True, "application_name": "pypi-pulse"}
    if "connect_timeout" not in url:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    pool = ConnectionPool(
        url,
        kwargs=kwargs,
        min_size=1,
        max_size=max_size,
        configure=configure,
        check=ConnectionPool.check_connection,
        open=False,
        name="pypi-pulse-read",
    )
    pool.open(wait=False)  # the server starts while the database is still down; reads wait for it
    return pool


class _SharedHistory(Sink):
    """A pooled sink reads the history through its pool's reader, not one of its own."""

    def share_history(self, reader: HistoryReader) -> None:
        self.history = reader.history
        self._history_reader = reader

    def _close_history(self) -> None:
        """The pool's reader outlives its sinks: the pool closes it."""


class _OwnSQLite(_SharedHistory, SQLiteSink):
    """A SQLite sink of its own (closed with it) whose history reader is the pool's (which outlives it)."""


class _ThreadSQLite(_SharedHistory, SQLiteSink):
    """A read-only SQLite sink whose close() ends the request, not the thread's connection."""

    ident: Optional[int] = None

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        SQLiteSink.close(self)


@functools.cache
def _pooled_postgres_class() -> type:
    """Defined on first use: psycopg is the postgres extra's, and a SQLite-only install has none."""
    from pypi_pulse.sink.postgres import PostgresSink

    class PooledPostgres(_SharedHistory, PostgresSink):
        """PostgresSink's reads, each on a connection borrowed from the pool for that query."""

        def __init__(self, pool: ReadPool):  # no connection of its own
            self.url = pool.url
            self.readonly = True
            self._read_pool = pool

        def _retry_once(self, fn: Callable[..., T]) -> T:
            return self._read_pool._borrow(fn)

        def close(self) -> None:
            pass

    return PooledPostgres
