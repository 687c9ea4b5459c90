"""The Redis backends beyond the shared contract.

They run against the session's real redis-server (AOF, fsync always). Each
test uses its own key prefix and never flushes the server, which other tests
share; the restart test stops and starts that server, so it always restarts
it in ``finally``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import trio
from redis.crc import key_slot

from jobtrio.backends.base import BackendUnavailable, Finish, JobQuery, NodeRecord, StateConflict
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.backends.redis import RedisBroker, RedisConnection, RedisStore
from jobtrio.backends.redis import broker as redis_broker
from jobtrio.backends.redis import store as redis_store
from jobtrio.config import Settings
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission
from tests.reference import doc_of as _doc
from tests.reference import matches_the_reference
from tests.servers import RedisServer, free_port

NOW = 1_700_000_000.123456
ids = IdGenerator()


def make(job_type: str = "noop", now: float = NOW, **fields) -> Job:
    return validate_submission({"type": job_type, **fields}, now, ids=ids)


def unique_prefix() -> str:
    return "r" + uuid.uuid4().hex[:12]


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    b = await RedisBroker.open(redis_server.url, prefix=unique_prefix())
    try:
        yield b
    finally:
        await b.close()


def keys_of(raw: redis.Redis, prefix: str) -> set[str]:
    """Every key that mentions the prefix, wherever it appears in the name."""
    return {k.decode() for k in raw.scan_iter(match=f"*{prefix}*", count=1000)}


# --------------------------------------------------------------------------- outages


async def test_restart_mid_run_keeps_acknowledged_jobs(redis_server, broker):
    first = [make(payload={"i": i}) for i in range(50)]
    acked = {j.id for j in await broker.enqueue(first, NOW)}
    [held] = await broker.claim("n1", 1, 600, NOW)

    redis_server.stop()
    try:
        with pytest.raises(BackendUnavailable) as info:
            await broker.enqueue([make()], NOW)
        assert info.value.backend == "redis"
        with pytest.raises(BackendUnavailable):
            await broker.claim("n1", 10, 30, NOW)
        with pytest.raises(BackendUnavailable):
            await broker.finish([Finish(held.job.id, held.token, "completed")], NOW)
        with pytest.raises(BackendUnavailable):
            await broker.depths()
        with pytest.raises(BackendUnavailable):
            await broker.ping()
    finally:
        redis_server.start()

    # the same object, untouched, works again: nothing to reconnect by hand
    await broker.ping()
    second = [make(payload={"i": 50 + i}) for i in range(50)]
    acked |= {j.id for j in await broker.enqueue(second, NOW + 1)}
    assert set(await broker.get_many(sorted(acked))) == acked
    # the lease taken before the restart survived with its token
    [done] = await broker.finish([Finish(held.job.id, held.token, "completed")], NOW + 2)
    assert done is not None and done.status == JobStatus.COMPLETED
    drained = set()
    while leases := await broker.claim("n2", 40, 30, NOW + 3):
        drained |= {lease.job.id for lease in leases}
    assert drained == acked - {held.job.id}
    depths = await broker.depths()
    assert depths["running"] == len(drained) and depths["completed"] == 1


async def test_producer_rides_through_a_restart(redis_server, broker):
    """Enqueue in a loop while Redis restarts: no acknowledged job is lost.

    A batch whose call failed is of unknown outcome (Redis may have run the
    script and died before replying), so it may or may not be there; nothing
    else may appear (Jepsen's lost / unexpected check).
    """
    acked: set[str] = set()
    uncertain: set[str] = set()
    failures = 0
    restarted = trio.Event()
    batches_after_restart = 0

    async def producer() -> None:
        nonlocal failures, batches_after_restart
        while batches_after_restart < 5:
            batch = [make(payload={"n": len(acked)}) for _ in range(20)]
            try:
                out = await broker.enqueue(batch, NOW)
            except BackendUnavailable:
                failures += 1
                uncertain.update(j.id for j in batch)
                await trio.sleep(0.01)
                continue
            acked.update(j.id for j in out)
            if restarted.is_set():
                batches_after_restart += 1
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.sleep(0.05)
        try:
            await trio.to_thread.run_sync(redis_server.stop)
            await trio.sleep(0.2)  # the producer keeps calling into the outage
        finally:
            await trio.to_thread.run_sync(redis_server.start)
        restarted.set()

    assert failures > 0
    present = set(await broker.get_many(sorted(acked | uncertain)))
    assert acked <= present  # nothing lost
    pending = (await broker.depths())["pending"]
    assert pending == len(present)  # nothing unexpected
    drained = set()
    while leases := await broker.claim("n", 100, 30, NOW):
        drained |= {lease.job.id for lease in leases}
    assert drained == present


async def test_unreachable_server_is_backend_unavailable():
    broker = await RedisBroker.open(f"redis://127.0.0.1:{free_port()}/0", prefix=unique_prefix())
    try:
        with trio.fail_after(5):
            with pytest.raises(BackendUnavailable):
                await broker.claim("n", 1, 30, NOW)
    finally:
        await broker.close()


# --------------------------------------------------------------------------- exact JSON

TRICKY = {
    "nested": {"a": {"b": {"c": [1, {"d": []}, {}]}}},
    "empty_object": {},
    "empty_list": [],
    "list_of_empties": [{}, [], [{}], ""],
    "unicode": 'żółw 🐢 \u2028 \u0000 "quoted" \\ back',
    "keys in order": {"z": 1, "a": 2, "m": 3},
    "precise": 1700000000.123456,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "third": 1 / 3,
    "negative_zero": -0.0,
    "big_int": 2**64 + 1,
    "bigger_int": 10**30,
    "null": None,
    "bools": [True, False],
}


async def test_lua_keeps_json_exact(broker):
    job = make(payload=TRICKY, timeout=0.1 + 0.2, scheduled_at=NOW - 0.000001)
    [stored] = await broker.enqueue([job], NOW)
    t = NOW + 0.1 + 0.2
    [lease] = await broker.claim('nœud-"1"', 1, 1 / 3, t)
    assert lease.expires_at == t + 1 / 3
    [done] = await broker.finish(
        [Finish(job.id, lease.token, "completed", worker_id="wörker 🐢", result={"echo": TRICKY})],
        t + 1e-6,
    )
    for got in (lease.job, done, await broker.get(job.id)):
        # byte-exact: same keys in the same order, same float bits, same big ints
        assert json.dumps(got.payload) == json.dumps(TRICKY)
        assert got.timeout == 0.1 + 0.2 and got.created_at == NOW
    assert json.dumps(done.result) == json.dumps({"echo": TRICKY})
    assert done.attempts[0].started_at == t and done.attempts[0].ended_at == t + 1e-6
    assert done.attempts[0].worker_id == "wörker 🐢" and done.node_id == 'nœud-"1"'
    assert lease.job.started_at == t

    # and identical, document for document, to the reference broker
    memory = MemoryBroker()
    [m_stored] = await memory.enqueue([job], NOW)
    [m_lease] = await memory.claim('nœud-"1"', 1, 1 / 3, t)
    [m_done] = await memory.finish(
        [
            Finish(
                job.id, m_lease.token, "completed", worker_id="wörker 🐢", result={"echo": TRICKY}
            )
        ],
        t + 1e-6,
    )
    assert stored.dumps() == m_stored.dumps()
    assert lease.job.dumps() == m_lease.job.dumps()
    assert done.dumps() == m_done.dumps()


async def test_store_keeps_json_exact(redis_server):
    store = await RedisStore.open(redis_server.url, prefix=unique_prefix())
    try:
        job = make(payload=TRICKY, now=NOW + 1e-6)
        await store.put_many([job])
        got = await store.get(job.id)
        assert got.dumps() == job.dumps()
        [listed] = (await store.query(JobQuery(created_after=NOW + 1e-6))).jobs
        assert listed.dumps() == job.dumps()
        assert (await store.query(JobQuery(created_after=NOW + 2e-6))).jobs == []
    finally:
        await store.close()


# --------------------------------------------------------------------------- idempotency


async def test_idempotency_key_under_concurrency(broker):
    """Many tasks race to enqueue each key: one job per key, and every racer gets it."""
    results: dict[str, list[str]] = {f"key-{k}": [] for k in range(20)}

    async def racer(seed: int) -> None:
        rng = random.Random(seed)
        keys = list(results)
        rng.shuffle(keys)
        for key in keys:
            [job] = await broker.enqueue([make(idempotency_key=key, payload={"by": seed})], NOW)
            results[key].append(job.id)

    async with trio.open_nursery() as nursery:
        for seed in range(6):
            nursery.start_soon(racer, seed)

    for key, got in results.items():
        assert len(got) == 6 and len(set(got)) == 1, key
    leases = await broker.claim("n", 100, 30, NOW)
    assert len(leases) == len(results)
    assert {lease.job.idempotency_key for lease in leases} == set(results)


async def test_idempotency_key_is_freed_by_purge(broker):
    epoch = await broker.acquire_epoch("leader", NOW)
    [first] = await broker.enqueue([make(idempotency_key="once")], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    await broker.finish([Finish(first.id, lease.token, "completed")], NOW + 1)
    [same] = await broker.enqueue([make(idempotency_key="once")], NOW + 2)
    assert same.id == first.id and same.status == JobStatus.COMPLETED
    assert await broker.purge_finished(NOW + 10, epoch) == 1
    [fresh] = await broker.enqueue([make(idempotency_key="once")], NOW + 11)
    assert fresh.id != first.id and fresh.status == JobStatus.PENDING


# --------------------------------------------------------------------------- retention and keys


async def test_purge_frees_every_finished_key(redis_server, raw):
    """A Broker without the records (its Store is MongoDB) keeps nothing of a purged job
    but its tombstone, and that only until ``tombstones_before`` passes it."""
    prefix = unique_prefix()
    broker = await RedisBroker.open(redis_server.url, prefix=prefix)
    try:
        epoch = await broker.acquire_epoch("leader", NOW)
        jobs = [make(idempotency_key=f"k{i}", payload={"i": i}) for i in range(60)]
        await broker.enqueue(jobs, NOW)
        leases = await broker.claim("n", 40, 30, NOW)
        finished = await broker.finish(
            [Finish(lease.job.id, lease.token, "completed") for lease in leases[:30]]
            + [Finish(lease.job.id, lease.token, "failed", error="x") for lease in leases[30:]],
            NOW + 1,
        )
        finished.append(await broker.cancel(jobs[-1].id, NOW + 1))
        done_ids = {j.id for j in finished}
        assert len(done_ids) == 41

        assert await broker.purge_finished(NOW + 2, epoch) == 41
        # the broker keeps nothing of a purged job but its tombstone: no hash, no index
        # entry, no key mapping
        p = f"{{{prefix}}}:"
        assert raw.hlen(p + "tombs") == raw.zcard(p + "tombs_at") == 41
        for job_id in done_ids:
            assert not raw.exists(p + "job:" + job_id)
        assert raw.zcard(p + "finished") == 0
        assert raw.hlen(p + "idem") == 19
        assert raw.zcard(p + "pending:default\x1fnoop") == 19
        depths = await broker.depths()
        assert depths["completed"] == depths["failed"] == depths["cancelled"] == 0
        assert depths["pending"] == 19
        job_keys = {k for k in keys_of(raw, prefix) if k.startswith(p + "job:")}
        assert len(job_keys) == 19 and not any(
            k.removeprefix(p + "job:") in done_ids for k in job_keys
        )

        # purge everything: what stays is bookkeeping, never per-job state
        rest = await broker.claim("n", 100, 30, NOW + 3)
        await broker.finish([Finish(r.job.id, r.token, "completed") for r in rest], NOW + 3)
        assert await broker.purge_finished(NOW + 4, epoch, tombstones_before=NOW + 4) == 19
        # (the leases and their tokens keep one member that is no job's: see broker_common.lua)
        assert set(keys_of(raw, prefix)) <= {
            p + k for k in ("seq", "counts", "epoch", "leases", "tokens")
        }
        assert raw.zcard(p + "leases") == raw.hlen(p + "tokens") == 1
        assert raw.zrangebyscore(p + "leases", "-inf", "(+inf") == []
        assert all(int(v) == 0 for v in raw.hvals(p + "counts"))
    finally:
        await broker.close()


async def test_every_key_carries_the_hash_tag(redis_server, raw):
    prefix = unique_prefix()
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    store = await RedisStore.open(redis_server.url, prefix=prefix, connection=broker.connection)
    try:
        epoch = await broker.acquire_epoch("leader", NOW)
        jobs = [
            make(idempotency_key="k"),
            make(scheduled_at=NOW + 100),
            make("other"),
            make(),
        ]
        await broker.enqueue(jobs, NOW)
        [a, b] = await broker.claim("n", 2, 30, NOW)
        await broker.finish([Finish(a.job.id, a.token, "failed", retry_at=NOW + 5)], NOW)
        await broker.finish([Finish(b.job.id, b.token, "completed")], NOW)
        await broker.claim_tick("nightly:cron", 60.0, epoch)
        await store.put_many(jobs)
        await store.put_node(NodeRecord("n1", "127.0.0.1:1", "alive", 1, NOW, NOW))
        await store.add_election({"leader": "n1", "epoch": epoch, "at": NOW})
        await store.query(JobQuery(created_after=NOW - 1, statuses=frozenset(JobStatus)))

        names = keys_of(raw, prefix)
        assert len(names) > 15
        tag = f"{{{prefix}}}:"
        assert all(name.startswith(tag) for name in names), names
        assert {key_slot(name.encode()) for name in names} == {key_slot(tag.encode())}
    finally:
        await broker.close()
        await store.close()


def test_prefix_with_braces_is_refused():
    connection = RedisConnection.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError):
        RedisBroker(connection, "bad{tag}")
    with pytest.raises(ValueError):
        RedisStore(connection, "")


# --------------------------------------------------------------------------- leader duties


async def test_claim_tick_forgets_old_ticks_but_never_fires_twice(broker, monkeypatch):
    monkeypatch.setattr(redis_broker, "TICKS_KEPT", 3)
    e = await broker.acquire_epoch("a", NOW)
    for tick in range(10):
        assert await broker.claim_tick("every-minute", tick * 60.0, e) is True
    for tick in range(10):
        assert await broker.claim_tick("every-minute", tick * 60.0, e) is False
    assert await broker.claim_tick("every-minute", 600, e) is True  # int and float agree
    assert await broker.claim_tick("every-minute", 600.0, e) is False
    assert await broker.claim_tick("other", 0.0, e) is True


async def test_retry_conflict_carries_the_job(broker):
    [job] = await broker.enqueue([make()], NOW)
    with pytest.raises(StateConflict) as info:
        await broker.retry(job.id, NOW)
    assert info.value.job.id == job.id and info.value.job.status == JobStatus.PENDING


async def test_batches_repeating_a_job_behave_like_the_reference(broker):
    """One lease finished twice in a batch, one id enqueued twice in a batch."""
    memory = MemoryBroker()
    a, b = make(priority=3), make(priority=3)
    again = a.copy()
    again.payload = {"second": True}
    for brk in (memory, broker):
        out = await brk.enqueue([a, b, again], NOW)
        assert [j.payload for j in out] == [{}, {}, {"second": True}]
    m_leases = await memory.claim("n", 5, 30, NOW)
    r_leases = await broker.claim("n", 5, 30, NOW)
    # the replaced job went to the back of its band, after b
    assert [x.job.dumps() for x in m_leases] == [x.job.dumps() for x in r_leases]
    assert [x.job.id for x in r_leases] == [b.id, a.id]
    m = await memory.finish([Finish(a.id, m_leases[1].token, "completed")] * 2, NOW + 1)
    r = await broker.finish([Finish(a.id, r_leases[1].token, "completed")] * 2, NOW + 1)
    assert r[1] is None and r[0] is not None
    assert [_doc(j) for j in m] == [_doc(j) for j in r]
    assert await broker.depths() == await memory.depths()


# --------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("seed", [20240611, 1, 2, 3])
async def test_matches_the_memory_broker_step_by_step(broker, seed):
    """Random operations on both brokers give the same documents, bit for bit.

    The Lua scripts re-implement transitions.py; this holds them to the
    reference through every move (see ``tests/reference.py``).
    """
    await matches_the_reference(broker, seed, NOW)


# --------------------------------------------------------------------------- store


async def test_store_queries_match_the_memory_store(redis_server, monkeypatch):
    """Every filter combination pages like the reference, across chunk and budget edges."""
    monkeypatch.setattr(redis_store, "QUERY_BUDGET", 37)  # force continuation calls
    rng = random.Random(99)
    store = await RedisStore.open(redis_server.url, prefix=unique_prefix())
    memory = MemoryStore()
    try:
        jobs = []
        statuses = list(JobStatus)
        for i in range(700):
            j = make(rng.choice(["a", "b", "c"]), now=NOW + i * 0.5, payload={"i": i})
            j.status = rng.choices(statuses, weights=[5, 1, 1, 1, 20, 1, 1, 1])[0]
            jobs.append(j)
        rng.shuffle(jobs)
        await store.put_many(jobs)
        await memory.put_many(jobs)
        queries = [
            JobQuery(limit=50),
            JobQuery(type="a", limit=33),
            JobQuery(statuses=frozenset({JobStatus.FAILED, JobStatus.CANCELLED}), limit=7),
            JobQuery(statuses=frozenset(statuses[:4]), type="b", limit=20),
            JobQuery(statuses=frozenset({JobStatus.COMPLETED}), limit=100),
            JobQuery(created_after=NOW + 100, created_before=NOW + 110.5, limit=4),
            JobQuery(created_after=NOW + 10, limit=200),
            JobQuery(created_before=NOW + 300, type="c", limit=25),
            JobQuery(
                statuses=frozenset({JobStatus.PENDING, JobStatus.RETRYING}),
                created_after=NOW + 50,
                created_before=NOW + 250,
                limit=9,
            ),
            JobQuery(statuses=frozenset(), limit=5),
            JobQuery(type="none-such", limit=5),
            JobQuery(limit=0),
        ]
        for q in queries:
            m_page, r_page = await memory.query(q), await store.query(q)
            pages = 0
            while True:
                assert [j.dumps() for j in r_page.jobs] == [j.dumps() for j in m_page.jobs], q
                assert r_page.next_cursor == m_page.next_cursor, q
                if m_page.next_cursor is None or pages > 200:
                    break
                pages += 1
                nxt = JobQuery(
                    statuses=q.statuses,
                    type=q.type,
                    created_after=q.created_after,
                    created_before=q.created_before,
                    limit=q.limit,
                    cursor=m_page.next_cursor,
                )
                m_page, r_page = await memory.query(nxt), await store.query(nxt)
        assert await store.count_by_status() == await memory.count_by_status()
    finally:
        await store.close()


async def test_store_elections_are_capped(redis_server, monkeypatch):
    monkeypatch.setattr(redis_store, "ELECTIONS_KEPT", 5)
    store = await RedisStore.open(redis_server.url, prefix=unique_prefix())
    try:
        for i in range(8):
            await store.add_election({"leader": f"n{i}", "epoch": i, "at": NOW + i / 3})
        records = await store.list_elections(limit=50)
        assert [r["epoch"] for r in records] == [7, 6, 5, 4, 3]
        assert records[0]["at"] == NOW + 7 / 3
    finally:
        await store.close()


# --------------------------------------------------------------------------- settings


async def test_from_settings_addr_and_url(redis_server):
    prefix = unique_prefix()
    by_addr = Settings(redis_addr=f"127.0.0.1:{redis_server.port}", redis_key_prefix=prefix)
    by_url = Settings(redis_url=redis_server.url, redis_db=3, redis_key_prefix=prefix)
    broker = await RedisBroker.from_settings(by_addr, records=True)
    store = await RedisStore.from_settings(by_url)
    shared = await RedisStore.from_settings(by_addr, connection=broker.connection)
    try:
        [job] = await broker.enqueue([make()], NOW)
        await store.put_many([job])
        await broker.ping()
        await store.ping()
        # the URL's /0 beat REDIS_DB=3, so the record is in db 0 where REDIS_ADDR points
        assert (await shared.get(job.id)).id == job.id
        await shared.close()  # it does not own the broker's connection
        assert (await broker.get(job.id)).id == job.id
    finally:
        await broker.close()
        await store.close()
    addr_db = RedisConnection.from_settings(by_addr.replace(redis_db=2, redis_password="pw"))
    kwargs = addr_db.client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["port"]) == (2, "pw", redis_server.port)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6390/2",
        "redis://:p%40ss@example.invalid",
        "redis://user:pw@[::1]:7000/0",
        "redis://example.invalid:6381",
    ],
)
def test_wire_options_read_a_url_as_redis_py_does(url):
    """trio's own connections go where redis-py's would, with the same credentials and db."""
    connection = RedisConnection.from_url(url, password="fallback", db=5, socket_timeout=1.5)
    kwargs = connection.client.connection_pool.connection_kwargs
    wire = connection.wire
    assert wire is not None
    assert (wire.host, wire.port, wire.db) == (
        kwargs["host"],
        kwargs.get("port", 6379),
        kwargs["db"],
    )
    assert (wire.username, wire.password) == (kwargs.get("username"), kwargs.get("password"))
    assert wire.socket_timeout == 1.5 and wire.connect_timeout == kwargs["socket_connect_timeout"]


@pytest.mark.parametrize(
    "url", ["rediss://example.invalid:6380/2", "unix:///tmp/redis.sock", "redis://h:1/0?db=3"]
)
def test_what_trio_connections_do_not_speak_takes_the_threads(url):
    assert RedisConnection.from_url(url).wire is None


def test_rediss_url_uses_tls():
    connection = RedisConnection.from_url("rediss://example.invalid:6380/2", password="pw")
    pool = connection.client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["retry"].get_retries() == 0


def test_unconfigured_settings_are_refused():
    with pytest.raises(ValueError, match="REDIS_ADDR"):
        RedisConnection.from_settings(Settings())


@pytest.fixture
def sentinel(redis_server: RedisServer, tmp_path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor jobs-master 127.0.0.1 {redis_server.port} 1\n"
    )
    process = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(250):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_from_settings_through_sentinel(sentinel):
    settings = Settings(
        redis_sentinels=(f"127.0.0.1:{sentinel}",),
        redis_sentinel_master="jobs-master",
        redis_key_prefix=unique_prefix(),
    )
    broker = await RedisBroker.from_settings(settings)
    try:
        [job] = await broker.enqueue([make()], NOW)
        [lease] = await broker.claim("n", 1, 30, NOW)
        assert lease.job.id == job.id
    finally:
        await broker.close()


async def test_two_connections_claiming_one_queue_never_share_a_job(redis_server):
    """Two Brokers, each with its own connection pool, drain one queue at once."""
    prefix = unique_prefix()
    a = await RedisBroker.open(redis_server.url, prefix=prefix)
    b = await RedisBroker.open(redis_server.url, prefix=prefix)
    try:
        assert a.connection is not b.connection
        jobs = [make(payload={"i": i}) for i in range(400)]
        await a.enqueue(jobs, NOW)
        claimed: dict[str, list[str]] = {"a": [], "b": []}

        async def drain(name: str, broker: RedisBroker) -> None:
            while leases := await broker.claim(name, 7, 30, NOW):
                claimed[name] += [lease.job.id for lease in leases]

        async with trio.open_nursery() as nursery:
            for _ in range(3):  # several claims in flight per connection
                nursery.start_soon(drain, "a", a)
                nursery.start_soon(drain, "b", b)
        everything = claimed["a"] + claimed["b"]
        assert sorted(everything) == sorted(j.id for j in jobs)  # each exactly once
        assert claimed["a"] and claimed["b"]
        assert (await a.depths())["running"] == 400
    finally:
        await a.close()
        await b.close()


async def test_on_the_server_clock_a_skewed_leader_cannot_reap_a_healthy_lease(redis_server):
    """Leases are decided on Redis's clock: a leader whose clock runs a minute ahead of
    the worker's (four 15 s leases) reaps nothing the worker keeps renewing, and a
    worker behind by as much still gets a full lease."""
    broker = await RedisBroker.open(redis_server.url, prefix=unique_prefix(), server_clock=True)
    try:
        real = time.time()
        epoch = await broker.acquire_epoch("leader", real)
        [job] = await broker.enqueue([make()], real)
        worker_now = real - 60.0  # the worker's clock is a minute behind
        [lease] = await broker.claim("worker", 1, 15, worker_now)
        leader_now = real + 60.0  # the leader's a minute ahead
        assert await broker.requeue_expired(leader_now, epoch, poison_limit=3) == []
        assert await broker.renew([(job.id, lease.token)], 15, worker_now + 5) == []
        assert await broker.requeue_expired(leader_now + 5, epoch, poison_limit=3) == []
        [held] = await broker.running()
        assert abs(held.expires_at - (time.time() + 15)) < 5  # on Redis's clock
        # a job scheduled 30 s ahead of Redis's clock is not promoted by the leader's
        [later] = await broker.enqueue([make(scheduled_at=real + 30)], real)
        assert await broker.promote_due(leader_now, epoch) == []
        assert (await broker.get(later.id)).status == JobStatus.SCHEDULED
        # and a lease that did run out on Redis's clock is reaped
        [short] = await broker.enqueue([make()], real)
        await broker.claim("worker", 1, 0.05, worker_now)
        with trio.fail_after(5):
            while not (expired := await broker.requeue_expired(worker_now, epoch, 3)):
                await trio.sleep(0.01)
        assert [j.id for j in expired] == [short.id]
    finally:
        await broker.close()
