"""A node on Redis: it survives a Redis restart mid-run, and the leader
reconciles jobs the Broker lost.

These run on the test session's own redis-server (AOF on, appendfsync
always), restarted in the middle of the run exactly as an operator would.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
import trio

from jobtrio.actors.node import Node
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryStore
from jobtrio.backends.redis import RedisBroker, RedisStore
from jobtrio.config import Settings
from jobtrio.jobs import JobStatus
from tests.servers import RedisServer
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_node_rides_out_a_redis_restart_and_loses_nothing(redis_server: RedisServer):
    prefix = "restart" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    store = await RedisStore.open(redis_server.url, prefix=prefix)
    node = Node(
        Settings(node_id="r1", worker_count=4, job_lease=5.0, retry_base_delay=0.05),
        broker,
        store,
    )
    accepted: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for _ in range(4):
            jobs = await node.submit_many(
                [{"type": "sleep", "payload": {"seconds": 0.02}} for _ in range(50)]
            )
            accepted += [j.id for j in jobs]
        await wait_until(lambda: node.dispatcher.finished >= 20, timeout=20)

        # Redis goes away in the middle of the run
        await trio.to_thread.run_sync(redis_server.stop)
        with pytest.raises(BackendUnavailable):
            await node.submit({"type": "noop"})
        health = await node.backend_health()
        assert not any(b.healthy for b in health)
        await wait_until(lambda: not node.dispatcher.broker_healthy, timeout=10)

        # and comes back with its append-only file; the node resumes on its own
        await trio.to_thread.run_sync(redis_server.start)
        await wait_until(lambda: node.dispatcher.broker_healthy, timeout=20)
        more = await node.submit_many([{"type": "noop"} for _ in range(20)])
        accepted += [j.id for j in more]

        async def all_done() -> bool:
            held = await broker.get_many(accepted)
            return len(held) == len(accepted) and all(
                j.status == JobStatus.COMPLETED for j in held.values()
            )

        await wait_until(all_done, timeout=60, interval=0.1, message="every accepted job done")
        await wait_until(lambda: node.recorder.backlog == 0, timeout=20)
        node.request_stop()
    for job_id in accepted:
        record = await store.get(job_id)
        assert record is not None and record.status == JobStatus.COMPLETED
    await broker.close()
    await store.close()


async def test_leader_reconciles_jobs_the_broker_lost(redis_server: RedisServer):
    """Redis loses its data; the Store still knows the jobs; the leader puts them back."""
    prefix = "reconcile" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix)
    store = MemoryStore()
    later = time.time() + 3600
    node = Node(Settings(node_id="r2", worker_count=2), broker, store)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        jobs = await node.submit_many(
            [{"type": "noop", "scheduled_at": later, "payload": {"i": i}} for i in range(5)]
        )
        await wait_until(lambda: node.recorder.backlog == 0)
        # the broker's keys vanish (a Redis without persistence restarted, say)
        client = redis.Redis.from_url(redis_server.url)
        keys = list(client.scan_iter(match=f"{{{prefix}}}*"))
        assert keys
        client.delete(*keys)
        assert await broker.get(jobs[0].id) is None
        epoch = node.leadership.view.epoch
        assert epoch is not None
        # records settle for a minute before the leader trusts them over the broker
        restored = await node.duties.reconcile(epoch, time.time() + 120)
        assert restored == 5
        held = await broker.get_many([j.id for j in jobs])
        assert {j.status for j in held.values()} == {JobStatus.SCHEDULED}
        assert await node.duties.reconcile(epoch, time.time() + 120) == 0  # idempotent
        node.request_stop()
    await broker.close()
