"""The Broker's reading moves as Redis Functions while Redis refuses writes.

Redis refuses a function not flagged ``no-writes`` before it starts wherever it
refuses writes (``min-replicas-to-write`` unmet: NOREPLICAS; a failed background
save: MISCONF); EVALSHA refused a script at its first write only, so a move that
only reads (a job's get, the running leases, the queues, the finished jobs) ran
there. It still must: a job's status can be read while nothing can be written.
A redis-server of this test's own: it changes the server's settings.
"""

from __future__ import annotations

import uuid

import pytest
import redis

from jobtrio.backends.base import Finish
from jobtrio.backends.redis import RedisBroker
from jobtrio.jobs import IdGenerator
from jobtrio.submission import validate_submission
from tests.servers import RedisServer, own_server

NOW = 1_700_000_000.0
ids = IdGenerator()


server = pytest.fixture(own_server, name="server")


@pytest.mark.parametrize("records", [False, True])
async def test_the_reading_moves_run_while_redis_refuses_writes(
    server: RedisServer, records: bool
) -> None:
    broker = await RedisBroker.open(server.url, prefix="r" + uuid.uuid4().hex[:8], records=records)
    raw = redis.Redis.from_url(server.url)
    try:
        jobs = [validate_submission({"type": "noop"}, NOW, ids=ids) for _ in range(3)]
        await broker.enqueue(jobs, NOW)
        first, second = await broker.claim("n1", 2, 30.0, NOW)
        await broker.finish([Finish(first.job.id, first.token, "completed")], NOW + 1)
        # every reading move once, so its library is loaded before writes are refused
        assert len(await broker.get_many([job.id for job in jobs])) == 3
        assert [lease.job.id for lease in await broker.running()] == [second.job.id]
        assert len(await broker.queues()) == 1
        assert [job.id for job in await broker.finished_due(NOW + 10)] == [first.job.id]
        raw.config_set("min-replicas-to-write", "1")
        with pytest.raises(redis.exceptions.ResponseError, match="NOREPLICAS"):
            raw.set("probe", "1")  # writes are refused now
        got = await broker.get(jobs[2].id)
        assert got is not None and got.status == "pending"
        assert [lease.job.id for lease in await broker.running()] == [second.job.id]
        [queue] = await broker.queues()
        assert queue.name == "default"
        assert [job.id for job in await broker.finished_due(NOW + 10)] == [first.job.id]
        assert broker.connection.functions  # as functions, not by a switch to EVALSHA
    finally:
        raw.config_set("min-replicas-to-write", "0")
        raw.close()
        await broker.close()


async def test_a_write_redis_refuses_for_want_of_replicas_is_a_503(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # NOREPLICAS (min-replicas-to-write unmet: a replica lagging or gone) is "not now",
    # like a failover: BackendUnavailable naming it, a submission a 503, not a 500; once
    # the replicas are back the same submission is filed
    import trio

    from jobtrio.actors.node import Node
    from jobtrio.api.app import create_app
    from jobtrio.backends.base import BackendUnavailable
    from jobtrio.backends.redis import RedisStore
    from jobtrio.config import Settings

    prefix = "r" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(server.url, prefix=prefix, records=True)
    store = await RedisStore.open(server.url, prefix=prefix)
    raw = redis.Redis.from_url(server.url)
    node = Node(Settings(node_id="n1", worker_count=1, shutdown_grace=0.2), broker, store)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            test = create_app(node).test_client()
            raw.config_set("min-replicas-to-write", "1")
            with pytest.raises(BackendUnavailable, match="NOREPLICAS"):
                await broker.enqueue([validate_submission({"type": "noop"}, NOW, ids=ids)], NOW)
            for path, body in (
                ("/api/v1/jobs", {"type": "noop"}),
                ("/api/v1/jobs/batch", {"jobs": [{"type": "noop"}] * 3}),
            ):
                response = await test.post(path, json=body)
                error = (await response.get_json())["error"]
                assert response.status_code == 503, (path, error)
                assert error["code"] == "unavailable", error
            logged = [r.getMessage() for r in caplog.records if r.name == "jobtrio.api"]
            assert logged and all("NOREPLICAS" in m for m in logged), logged
            raw.config_set("min-replicas-to-write", "0")
            response = await test.post("/api/v1/jobs", json={"type": "noop"})
            assert response.status_code == 201
            node.request_stop()
    finally:
        raw.config_set("min-replicas-to-write", "0")
        raw.close()
        await broker.close()
        await store.close()
