"""Fixtures of the unit tests that need a real peer without the reactor: one redis-server
per session for the Redis call store's tests (tests/unit/redislive.py). A missing
redis-server is an error, never a skip."""

from __future__ import annotations

import pytest

from tests.unit.redislive import Cluster, RedisProcess


@pytest.fixture(scope="session")
def redis_process():
    server = RedisProcess()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(redis_process):
    """Nodes on one emptied Redis and one test clock (L{Cluster})."""
    made = Cluster(redis_process)
    yield made
    made.close()
    assert made.failures() == [], "an unexpected error was logged"
