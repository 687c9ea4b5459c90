"""Shared fixtures: backends for the contract suite and a real redis-server.

The session starts its own ``redis-server`` on a free port (with AOF on, so
restart tests can check durability) and stops it at the end; no test talks
to a shared Redis or a mock. The MongoDB store runs only when MONGODB_URI is
set, and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from jobtrio.backends.base import Broker, Store
from jobtrio.backends.redis import scripts as redis_scripts
from tests.servers import RedisServer

# Every Redis Functions library the tests load raises if a call returns with a --@state
# table filled (scripts.CHECK_STATE_LEFT): the next call would inherit what it queued.
redis_scripts.CHECK_STATE_LEFT = True

#: "redis-records": a RedisBroker that keeps a RedisStore's records itself (Redis alone)
BROKERS = ["memory", "sqlite", "redis", "redis-records"]
STORES = [
    "memory",
    "sqlite",
    "redis",
    pytest.param(
        "mongodb",
        marks=pytest.mark.skipif(
            not os.environ.get("MONGODB_URI"),
            reason="MongoDB contract: MONGODB_URI is not set (no MongoDB server on this machine)",
        ),
    ),
]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL to the session's redis-server (started on first use); the test's function
    libraries are deleted after it (``RedisServer.flush_functions``)."""
    server: RedisServer = request.getfixturevalue("redis_server")
    try:
        yield server.url
    finally:
        server.flush_functions()


def _unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Broker]:
    kind = request.param
    if kind == "memory":
        from jobtrio.backends.memory import MemoryBroker

        b: Broker = MemoryBroker()
    elif kind == "sqlite":
        from jobtrio.backends.sqlite import SqliteBroker

        b = await SqliteBroker.open(str(tmp_path / "broker.db"))
    else:
        from jobtrio.backends.redis import RedisBroker

        server: RedisServer = request.getfixturevalue("redis_server")
        b = await RedisBroker.open(
            server.url, prefix=_unique_prefix(), records=kind == "redis-records"
        )
    try:
        yield b
    finally:
        await b.close()
        if kind.startswith("redis"):
            server.flush_functions()  # the prefix's libraries (RedisServer.flush_functions)


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:
    kind = request.param
    if kind == "memory":
        from jobtrio.backends.memory import MemoryStore

        s: Store = MemoryStore()
    elif kind == "sqlite":
        from jobtrio.backends.sqlite import SqliteStore

        s = await SqliteStore.open(str(tmp_path / "store.db"))
    elif kind == "redis":
        from jobtrio.backends.redis import RedisStore

        server: RedisServer = request.getfixturevalue("redis_server")
        s = await RedisStore.open(server.url, prefix=_unique_prefix())
    else:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            pytest.skip(
                "MongoDB contract: MONGODB_URI is not set (no MongoDB server on this machine)"
            )
        from jobtrio.backends.mongodb import MongoStore

        s = await MongoStore.open(uri, database="jobtrio_test_" + uuid.uuid4().hex[:8], timeout=5)
    try:
        yield s
    finally:
        if kind == "mongodb":
            await s.drop()  # type: ignore[attr-defined]
        await s.close()
        if kind == "redis":
            server.flush_functions()  # the prefix's libraries (RedisServer.flush_functions)
