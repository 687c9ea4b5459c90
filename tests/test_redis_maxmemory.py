"""Redis at ``maxmemory`` with ``noeviction``: every write is refused ("OOM command not
allowed when used memory > 'maxmemory'") until memory is freed or the limit raised.

That is "not now", like an outage: before, it reached callers as a plain Redis error,
so a submission was a 500 with a traceback in the log. Now it is
``BackendUnavailable`` naming the memory (in the log), a submission a 503, and
nothing is half written (Redis refuses a script at its first write, keeping its
writes atomic; a script whose first write frees memory, such as a claim, still runs).
Each test runs a redis-server of its own, since it changes the server's limit.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import redis
import trio

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.backends.base import BackendUnavailable, Finish
from jobtrio.backends.redis import RedisBroker, RedisStore, wire
from jobtrio.config import Settings
from jobtrio.jobs import IdGenerator, Job
from jobtrio.submission import validate_submission
from tests.servers import RedisServer, own_server

NOW = 1_700_000_000.0
ids = IdGenerator()


server = pytest.fixture(own_server, name="server")


def fill_up(url: str) -> redis.Redis:
    """Set maxmemory below what the server uses, under noeviction."""
    client = redis.Redis.from_url(url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(max(1024 * 1024, used // 2)))
    # make sure it is over: a little ballast of its own, refused once over the limit
    try:
        client.set("ballast", b"x" * (2 * 1024 * 1024))
    except redis.exceptions.OutOfMemoryError:
        pass
    return client


async def test_a_full_redis_is_unavailable_and_no_move_is_half_done(server: RedisServer) -> None:
    broker = await RedisBroker.open(server.url, prefix="m" + uuid.uuid4().hex[:8])
    client = None
    try:
        before = [validate_submission({"type": "noop"}, NOW, ids=ids) for _ in range(10)]
        await broker.enqueue(before, NOW)
        client = fill_up(server.url)
        refused = [validate_submission({"type": "noop"}, NOW, ids=ids) for _ in range(5)]
        with pytest.raises(BackendUnavailable, match="out of memory"):
            await broker.enqueue(refused, NOW)
        assert sum((await broker.depths()).values()) == 10  # nothing of either written
        assert await broker.get_many([job.id for job in refused]) == {}
        client.config_set("maxmemory", "0")
        await broker.enqueue(refused, NOW)
        leases = await broker.claim("n1", 100, 30.0, NOW)
        assert {lease.job.id for lease in leases} == {job.id for job in before + refused}
    finally:
        if client is not None:
            client.close()
        await broker.close()


async def test_a_submission_to_a_full_redis_is_a_503(server: RedisServer, caplog) -> None:
    prefix = "m" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(server.url, prefix=prefix, records=True)
    store = await RedisStore.open(server.url, prefix=prefix)
    node = Node(Settings(node_id="n1", worker_count=1, shutdown_grace=0.2), broker, store)
    client = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            test = create_app(node).test_client()
            client = fill_up(server.url)
            for path, body in (
                ("/api/v1/jobs", {"type": "noop"}),
                ("/api/v1/jobs/batch", {"jobs": [{"type": "noop"}] * 3}),
            ):
                response = await test.post(path, json=body)
                error = (await response.get_json())["error"]
                assert response.status_code == 503, (path, error)
                assert error["code"] == "unavailable", error
            logged = [r.getMessage() for r in caplog.records if r.name == "jobtrio.api"]
            assert logged and all("out of memory (maxmemory reached)" in m for m in logged)
            client.config_set("maxmemory", "0")
            response = await test.post("/api/v1/jobs", json={"type": "noop"})
            assert response.status_code == 201
            node.request_stop()
    finally:
        if client is not None:
            client.close()
        await broker.close()
        await store.close()


@pytest.mark.parametrize("records", [False, True])
async def test_the_purge_frees_memory_at_the_limit(server: RedisServer, records: bool) -> None:
    """The purge is how a full Redis gets out of it: it must run at the limit.

    Redis refuses a script whose first write could grow memory once over the
    limit; the purge wrote a tombstone first, so a Redis filled with finished
    jobs refused the one move that frees it (with MongoDB beside it, or with
    the records kept in Redis alike).
    """
    broker = await RedisBroker.open(server.url, prefix="m" + uuid.uuid4().hex[:8], records=records)
    client = None
    try:
        epoch = await broker.acquire_epoch("leader", NOW)
        payload = {"blob": "x" * 2000}
        for _ in range(4):
            jobs = [
                validate_submission({"type": "noop", "payload": payload}, NOW, ids=ids)
                for _ in range(250)
            ]
            await broker.enqueue(jobs, NOW)
            leases = await broker.claim("n1", 250, 30.0, NOW)
            finishes = [Finish(lease.job.id, lease.token, "completed") for lease in leases]
            await broker.finish(finishes, NOW + 1)
        client = fill_up(server.url)
        with pytest.raises(BackendUnavailable, match="out of memory"):
            await broker.enqueue([validate_submission({"type": "noop"}, NOW, ids=ids)], NOW)
        before = int(client.info("memory")["used_memory_dataset"])
        purged = 0
        while n := await broker.purge_finished(NOW + 2, epoch):
            purged += n
        assert purged == 1000
        assert await broker.get(leases[0].job.id) is None
        if not records:  # the jobs left Redis, their 2,000-byte payloads with them
            freed = before - int(client.info("memory")["used_memory_dataset"])
            assert freed > 1000 * 2000, freed
    finally:
        if client is not None:
            client.close()
        await broker.close()


async def test_at_the_limit_the_jobs_already_running_renew_and_finish(server: RedisServer) -> None:
    """On Redis Functions only the moves that file new jobs are refused at the limit
    (``deny-oom``); a renew or a finish of a job already running runs whole
    (``allow-oom``), so the jobs in flight end instead of waiting for their leases to
    run out. Under EVALSHA both were refused at their first write."""
    broker = await RedisBroker.open(server.url, prefix="m" + uuid.uuid4().hex[:8], records=True)
    client = None
    try:
        await broker.enqueue(
            [validate_submission({"type": "noop"}, NOW, ids=ids) for _ in range(4)], NOW
        )
        warm, *leases = await broker.claim("n1", 4, 30.0, NOW)
        # its libraries loaded before the limit: Redis refuses a FUNCTION LOAD there too,
        # and a call whose library is refused runs with EVALSHA
        await broker.renew([(warm.job.id, warm.token)], 30.0, NOW)
        await broker.finish([Finish(warm.job.id, warm.token, "completed")], NOW)
        client = fill_up(server.url)
        with pytest.raises(BackendUnavailable, match="out of memory"):
            await broker.enqueue([validate_submission({"type": "noop"}, NOW, ids=ids)], NOW)
        gone = await broker.renew([(lease.job.id, lease.token) for lease in leases], 30.0, NOW)
        assert gone == []
        done = await broker.finish(
            [Finish(lease.job.id, lease.token, "completed") for lease in leases], NOW + 1
        )
        assert [job.status for job in done if job is not None] == ["completed"] * 3
    finally:
        if client is not None:
            client.close()
        await broker.close()


def noop() -> Job:
    return validate_submission({"type": "noop"}, NOW, ids=ids)


async def _file_with_deps(
    broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]
) -> None:
    parent = noop()
    child = dataclasses.replace(noop(), depends_on=[parent.id])
    filed += [parent.id, child.id]
    await broker.enqueue([parent, child], NOW)


async def _file_keyed_workflow(
    broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]
) -> None:
    root = dataclasses.replace(
        noop(), idempotency_key="k" + uuid.uuid4().hex, workflow={"kind": "chain"}
    )
    filed.append(root.id)
    await broker.enqueue([root], NOW)


async def _file_and_claim(
    broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]
) -> None:
    one = noop()
    filed.append(one.id)
    await broker.enqueue_and_claim([one], NOW, "n1", 1, 30.0)


async def _revive(broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]) -> None:
    one = noop()
    filed.append(one.id)
    await broker.revive(one, NOW)


async def _restore(broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]) -> None:
    one = noop()
    filed.append(one.id)
    await broker.restore([one], NOW, epoch)


async def _fire_tick(broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]) -> None:
    one = noop()
    filed.append(one.id)
    await broker.fire_tick("s" + uuid.uuid4().hex[:6], NOW, one, epoch, NOW)


async def _store_put(broker: RedisBroker, store: RedisStore, epoch: int, filed: list[str]) -> None:
    one = noop()
    filed.append(one.id)
    await store.put_many([one])


@pytest.mark.parametrize(
    "move",
    [
        _file_with_deps,
        _file_keyed_workflow,
        _file_and_claim,
        _revive,
        _restore,
        _fire_tick,
        _store_put,
    ],
    ids=lambda move: move.__name__.strip("_"),
)
async def test_at_the_limit_every_move_that_files_new_jobs_is_refused_whole(
    server: RedisServer, move: Any
) -> None:
    """Each script that files a new job or record is ``deny-oom`` as a Redis Function
    (``scripts.CREATES``): at the limit it is refused before it starts and writes
    nothing. An ``allow-oom`` one would run whole and file past the limit: a group
    commit's enqueue with its claim, a workflow, a schedule's tick would take memory
    Redis has not got. Its library is loaded before the limit (else the call is
    EVALSHA's, refused at its first write), as a node's is after its first call."""
    p = "m" + uuid.uuid4().hex[:8]
    broker = await RedisBroker.open(server.url, prefix=p)
    store = await RedisStore.open(server.url, prefix=p)
    client = None
    try:
        epoch = await broker.acquire_epoch("n1", NOW)
        loaded: list[str] = []
        await move(broker, store, epoch, loaded)  # its library loaded
        assert await broker.get_many(loaded) or await store.get(loaded[0])
        client = fill_up(server.url)
        functions = client.function_list(library="jobtrio_*")
        filed: list[str] = []
        with pytest.raises(BackendUnavailable, match="out of memory"):
            await move(broker, store, epoch, filed)
        assert client.function_list(library="jobtrio_*") == functions  # none loaded at it
        assert await broker.get_many(filed) == {}
        assert await store.get(filed[0]) is None
    finally:
        if client is not None:
            client.close()
        await store.close()
        await broker.close()


@pytest.mark.parametrize("native", [True, False], ids=["wire", "thread"])
async def test_a_library_refused_at_the_limit_is_loaded_once_memory_is_free(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """Redis refuses a FUNCTION LOAD at the limit: "not now", so that call runs with
    EVALSHA and the connection keeps Redis Functions. Taken as "for good", every later
    call would be EVALSHA's, and at the next limit the renews and finishes of the jobs
    already running would be refused again (``allow-oom`` is a function's only)."""
    monkeypatch.setattr(wire, "NATIVE_SCRIPTS", native)
    broker = await RedisBroker.open(server.url, prefix="m" + uuid.uuid4().hex[:8], records=True)
    client = None
    try:
        one = validate_submission({"type": "noop"}, NOW, ids=ids)
        await broker.enqueue([one], NOW)
        client = fill_up(server.url)
        names = {lib[b"library_name"] for lib in map(pairs, client.function_list())}
        assert (await broker.get(one.id)) is not None  # get's library: not loadable now
        assert broker.connection.functions is True
        client.config_set("maxmemory", "0")
        evalsha = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
        assert (await broker.get(one.id)) is not None
        loaded = {lib[b"library_name"] for lib in map(pairs, client.function_list())}
        assert len(loaded - names) == 1  # get's, now
        assert int(client.info("commandstats")["cmdstat_evalsha"]["calls"]) == evalsha
    finally:
        if client is not None:
            client.close()
        await broker.close()


def pairs(flat: list[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
