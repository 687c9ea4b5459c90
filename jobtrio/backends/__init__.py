"""Storage backends; ``open_backends`` picks them from the settings.

- nothing configured: SQLite (broker and store in one file, ``SQLITE_PATH``);
- ``REDIS_ADDR``/``REDIS_URL``/``REDIS_SENTINELS``: Redis is the broker, and the store too
  unless ``MONGODB_URI`` is set;
- ``MONGODB_URI``: MongoDB is the store.
"""

from __future__ import annotations

from ..config import Settings
from .base import Broker, Store


async def open_backends(settings: Settings) -> tuple[Broker, Store]:
    broker: Broker
    store: Store
    if settings.redis_configured:
        from .redis import RedisBroker

        # without MongoDB the Broker keeps the RedisStore's records itself, in its moves;
        # leases and promotions are decided on Redis's clock, never on two nodes' clocks
        broker = await RedisBroker.from_settings(
            settings, records=not settings.mongodb_uri, server_clock=True
        )
    else:
        from .sqlite import SqliteBroker

        broker = await SqliteBroker.open(settings.sqlite_path)
    if settings.mongodb_uri:
        from .mongodb import MongoStore

        store = await MongoStore.from_settings(settings)
    elif settings.redis_configured:
        from .redis import RedisBroker, RedisStore

        # one connection pool and one thread limiter for both
        assert isinstance(broker, RedisBroker)
        store = await RedisStore.from_settings(settings, connection=broker.connection)
    else:
        from .sqlite import SqliteStore

        store = await SqliteStore.open(settings.sqlite_path)
    return broker, store
