"""Sink fixtures: every contract test runs against SQLite and against a real PostgreSQL server.

Each PostgreSQL test gets its own schema (selected through the URL's `options=-csearch_path=...`, which libpq and
therefore `open_sink` understand), so tests never see each other's rows and the schema is dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest


@contextlib.contextmanager
def fresh_schema(base_url: str):
    """A new, empty PostgreSQL schema; yields a sink URL that points at it."""
    name = f"pulse_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def pg_url(postgres_url):
    with fresh_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sink_url(request) -> str:
    """The URL of an empty sink of each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


