"""Sink fixtures: every contract test runs against SQLite and against a real PostgreSQL server.

Each PostgreSQL test gets its own schema (selected through the URL's `options=-csearch_path=...`, which libpq and
therefore `open_sink` understand), so tests never see each other's rows and the schema is dropped afterwards.
"""

from __future__ import annotations

import pytest

from pulse_testing import postgres_schema




@pytest.fixture
def pg_url(postgres_url):
    with postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sink_url(request) -> str:
    """The URL of an empty sink of each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


