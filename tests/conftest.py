"""Shared fixtures: a real embedded broker for the session, fresh topics and sinks per test.

Helpers that tests import live in `pulse_testing.py`: `from conftest import` is ambiguous once several test
folders have their own conftest.py."""

from __future__ import annotations

import itertools
import os

import pytest

from pypi_pulse.broker import EmbeddedBroker, ensure_topics

_topic_ids = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> EmbeddedBroker:
    b = EmbeddedBroker(port=0, log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
    yield b
    b.stop()


@pytest.fixture
def topic(broker, request) -> str:
    """A fresh 4-partition topic (and its dead-letter topic) for this test."""
    name = f"t{next(_topic_ids)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    ensure_topics(broker.bootstrap, {name: 4, name + "-dlq": 1})
    return name


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pulse.db'}"


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("PYPI_PULSE_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("PYPI_PULSE_TEST_POSTGRES_URL is not set: run `. .ci/postgres.sh` first (CI does)")
    return url


# Every sink contract test runs against SQLite and against a real PostgreSQL server. Each PostgreSQL test gets its
# own schema (selected through the URL's `options=-csearch_path=...`, which libpq and therefore `open_sink`
# understand), so tests never see each other's rows and the schema is dropped afterwards.
@pytest.fixture
def pg_url(postgres_url):
    from pulse_testing import postgres_schema

    with postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sink_url(request) -> str:
    """The URL of an empty sink of each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def flow_helpers():
    """The `pulse_testing` helpers (publish, run_flow, expected_windows...) as a fixture."""
    import pulse_testing

    return pulse_testing
