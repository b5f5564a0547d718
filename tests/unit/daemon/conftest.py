"""Fixtures of the daemon tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

#: The Redis database the feed tests write (flushed before and after each).
REDIS_DB = 15


@pytest.fixture
def rdb() -> Iterator[redis.Redis]:
    """A client of the real Redis on loopback, database REDIS_DB, flushed."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
