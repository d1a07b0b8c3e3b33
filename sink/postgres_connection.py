"""Connecting to PostgreSQL: the URL, the one-line errors a user can act on, the loader that makes PostgreSQL's
sums the same Python types as SQLite's, and the `?` placeholders of the shared query layer. Used by the sink
(sink/postgres.py), its read pool (sink/read_pool.py) and the start-up checks (pypi_pulse/preflight.py).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import psycopg
import structlog
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict

from pypi_pulse.errors import UserError

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 10
URL_HINT = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"


class IntegralNumericLoader(Loader):
    """SUM(bigint) is NUMERIC in PostgreSQL: load it as int (float if fractional), as SQLite returns it, so the
    shared query layer gets the same Python types from both backends (and JSON-serialisable ones)."""

    def load(self, data) -> int | float:
        text = bytes(data)
        if b"." in text or b"N" in text or b"n" in text:  # fractional, NaN, Infinity
            return float(text)
        return int(text)


# ---- `?` placeholders -------------------------------------------------------------------------------------

# Tokens that must pass through untouched: string literals, quoted identifiers, comments. Then `?` and `%`.
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\?|%""", re.S)


@functools.lru_cache(maxsize=512)
def translate_placeholders(sql: str) -> str:
    """Rewrite the shared layer's qmark SQL for psycopg: `?` becomes `%s` except inside string literals, quoted
    identifiers and comments, and every literal `%` is doubled (psycopg reads `%` everywhere, quotes or not)."""

    def sub(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "?":
            return "%s"
        return tok.replace("%", "%%")

    return _TOKENS.sub(sub, sql)


# ---- connecting -------------------------------------------------------------------------------------------


def describe(url: str) -> dict:
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise UserError(f"invalid PostgreSQL URL ({str(exc).strip()}): use {URL_HINT}") from None
    return {
        "host": info.get("host") or "localhost",
        "port": info.get("port") or "5432",
        "user": info.get("user") or "(default user)",
        "dbname": info.get("dbname") or info.get("user") or "(default database)",
    }


def user_error(url: str, exc: psycopg.Error) -> UserError:
    """One line that says what is wrong with the server, the credentials or the database, and how to fix it."""
    d = describe(url)
    where = f"{d['host']}:{d['port']}"
    msg = str(exc)
    low = msg.lower()
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        return UserError(
            f"PostgreSQL at {where} rejected the credentials of user {d['user']!r}: "
            f"fix the user and password in the sink URL ({URL_HINT})"
        )
    if re.search(r'role "[^"]*" does not exist', msg):
        return UserError(
            f"PostgreSQL at {where} has no user {d['user']!r}: create it (createuser) "
            f"or fix the user in the sink URL ({URL_HINT})"
        )
    if re.search(r'database "[^"]*" does not exist', msg):
        return UserError(
            f"PostgreSQL at {where} has no database {d['dbname']!r}: create it "
            f"(createdb {d['dbname']}) or fix the database name in the sink URL ({URL_HINT})"
        )
    if "invalid" in low and ("uri" in low or "connection option" in low or "option" in low):
        return UserError(f"invalid PostgreSQL URL ({msg.strip()}): use {URL_HINT}")
    if "resolve host" in low or "could not translate host name" in low:
        return UserError(f"cannot resolve PostgreSQL host {d['host']!r}: fix the host in the sink URL ({URL_HINT})")
    if (
        "refused" in low
        or "timeout" in low
        or "could not connect" in low
        or "no route" in low
        or "connection failed" in low
    ):
        return UserError(
            f"cannot reach PostgreSQL at {where}: start the server (or check the firewall) "
            f"or fix the host and port in the sink URL ({URL_HINT})"
        )
    first_line = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
    return UserError(f"cannot connect to PostgreSQL at {where} ({first_line}): check the sink URL ({URL_HINT})")


def scalar(cur: psycopg.Cursor) -> Any:
    """The first column of the one row an aggregate or a catalog lookup always returns."""
    row = cur.fetchone()
    assert row is not None, "the query returned no row"
    return row[0]


def connect(url: str, *, readonly: bool) -> psycopg.Connection:
    """Autocommit connection (each read is its own snapshot, writes use explicit transactions); a readonly one
    makes every transaction of the session read-only, so even `query()` cannot change anything."""
    describe(url)  # a malformed URL fails here, before any network traffic
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": "pypi-pulse"}
    if "connect_timeout" not in url:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        conn = psycopg.connect(url, **kwargs)
    except psycopg.Error as exc:
        raise user_error(url, exc) from None
    conn.adapters.register_loader("numeric", IntegralNumericLoader)
    if readonly:
        conn.execute("SET default_transaction_read_only = on")
    return conn


def warn_on_collation(conn: psycopg.Connection) -> None:
    """Text sorts byte-wise in SQLite; a database with a language collation (en_US...) orders names differently
    (ties in top lists, category order), so say so once at start-up."""
    collate = scalar(conn.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()"))
    if collate not in ("C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"):
        log.warning(
            "sink.collation",
            collation=collate,
            hint="create the database with `createdb --locale=C.UTF-8 --template=template0` to sort as SQLite does",
        )


def require_schema(conn: psycopg.Connection, url: str) -> None:
    """A reader on a database the dataflow has not set up yet gets the empty state's message, not a SQL error."""
    if not scalar(conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")):
        d = describe(url)
        raise UserError(
            f"no pypi-pulse data in database {d['dbname']!r} at {d['host']}:{d['port']}: "
            "run `pypi-pulse up`, `pypi-pulse dataflow` or `pypi-pulse run` with this --sink first"
        )
