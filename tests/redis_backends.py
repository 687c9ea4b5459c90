"""Redis Broker fixtures several test modules take, each as
``pytest.fixture(<function>, name=...)`` (as ``servers.own_server`` is taken).

Each opens on the session's ``redis_server`` under a prefix of its own, so tests
sharing that server never see each other's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import redis

from jobtrio.backends.redis import RedisBroker, RedisStore
from tests.servers import RedisServer


async def records_broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    """A Broker keeping records; afterwards its keys are deleted and the server's
    functions flushed (the tests that call its scripts by hand leave no library)."""
    prefix = "a" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    try:
        yield broker
    finally:
        await broker.close()
        raw = redis.Redis.from_url(redis_server.url)
        for key in raw.scan_iter(match=f"{{{prefix}}}*"):
            raw.delete(key)
        raw.close()
        redis_server.flush_functions()


async def records_pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBroker, RedisStore]]:
    """A Broker keeping records and the Store reading them, on one connection."""
    prefix = "r" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    store = await RedisStore.open(redis_server.url, prefix=prefix, connection=broker.connection)
    try:
        yield broker, store
    finally:
        await broker.close()
