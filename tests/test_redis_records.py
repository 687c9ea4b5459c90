"""A RedisBroker that keeps the RedisStore's records itself (Redis as the whole backend).

Every Broker move writes the job's record and refiles it in the same script,
so the node's recorder copies nothing. These tests hold the records to what
the Broker holds after every kind of move, check the indexes the Store's
queries read, and check the records that outlive the Broker's copy
(retention, purge) and the writes the Store must refuse.
"""

from __future__ import annotations

import random
import uuid

import pytest
import redis
import trio

from jobtrio.actors.node import Node
from jobtrio.backends import open_backends
from jobtrio.backends.base import Finish, JobQuery, Lease, StateConflict
from jobtrio.backends.redis import RedisBroker, RedisStore
from jobtrio.config import Settings
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission
from tests.redis_backends import records_pair
from tests.waiting import wait_until

NOW = 1_700_000_000.25
ids = IdGenerator()


def make(job_type: str = "noop", **fields) -> Job:
    """A valid submission, then given ``job_type``: the API refuses control characters in a
    type, but the Broker must carry any string it is handed (the scripts reserve 0x1f)."""
    job = validate_submission({"type": "noop", **fields}, NOW, ids=ids)
    job.type = job_type
    return job


kept = pytest.fixture(records_pair, name="kept")


async def assert_records_match(broker: RedisBroker, store: RedisStore, known: set[str]) -> None:
    """Each job the Broker holds has the very same record; indexes agree with records."""
    records: dict[str, Job] = {}
    for job_id in known:
        record = await store.get(job_id)
        live = await broker.get(job_id)
        if live is not None:
            assert record is not None, f"no record for held job {job_id}"
            assert record.dumps() == live.dumps()
        if record is not None:
            records[job_id] = record
    counts = await store.count_by_status()
    for status in JobStatus:
        want = sorted((i for i, r in records.items() if r.status == status), reverse=True)
        page = await store.query(JobQuery(statuses=frozenset({status}), limit=1000))
        assert [j.id for j in page.jobs] == want, status
        assert counts[str(status)] == len(want), status
    everything = await store.query(JobQuery(limit=1000))
    assert [j.id for j in everything.jobs] == sorted(records, reverse=True)
    for job_type in {r.type for r in records.values()}:
        page = await store.query(JobQuery(type=job_type, limit=1000))
        assert {j.id for j in page.jobs} == {i for i, r in records.items() if r.type == job_type}


async def test_every_move_leaves_the_record_equal_to_the_broker_copy(kept):
    broker, store = kept
    assert broker.writes_records_of(store)
    rng = random.Random(11)
    epoch = await broker.acquire_epoch("leader", NOW)
    known: set[str] = set()
    leases: list[Lease] = []
    now = NOW
    for step in range(120):
        now += 1.0
        op = rng.choice(
            ["enqueue", "enqueue", "claim", "finish", "finish", "cancel", "retry", "promote",
             "requeue", "purge", "delete", "replace"]
        )  # fmt: skip
        if op == "enqueue":
            batch = [
                make(
                    rng.choice(["a", "b", 'ty"pe\x1f']),
                    payload={"step": step},
                    scheduled_at=now + rng.choice([0, 0, 3]),
                    idempotency_key=rng.choice([None, None, f"k{rng.randrange(5)}"]),
                )
                for _ in range(rng.randrange(1, 4))
            ]
            known.update(j.id for j in await broker.enqueue(batch, now))
        elif op == "claim":
            leases += await broker.claim("n1", rng.randrange(1, 4), 2.0, now)
        elif op == "finish" and leases:
            chosen = [leases.pop(rng.randrange(len(leases))) for _ in range(min(2, len(leases)))]
            outcome = rng.choice(["completed", "failed", "timeout", "released"])
            await broker.finish(
                [
                    Finish(
                        lease.job.id,
                        lease.token,
                        outcome,  # type: ignore[arg-type]
                        "n1/w0",
                        result={"ok": step} if outcome == "completed" else None,
                        error=None if outcome == "completed" else "boom",
                        retry_at=now + 2 if outcome == "failed" and rng.random() < 0.5 else None,
                    )
                    for lease in chosen
                ],
                now,
            )
        elif op == "cancel" and known:
            await broker.cancel(rng.choice(sorted(known)), now)
        elif op == "retry" and known:
            try:
                await broker.retry(rng.choice(sorted(known)), now)
            except StateConflict:
                pass  # not failed or cancelled: refused, nothing moved
        elif op == "promote":
            await broker.promote_due(now, epoch)
        elif op == "requeue":
            await broker.requeue_expired(now, epoch, poison_limit=2)
        elif op == "purge":
            await broker.purge_finished(now - rng.choice([0, 5]), epoch)
        elif op == "delete" and known:
            victim = rng.choice(sorted(known))
            await broker.delete(victim)
            await store.delete(victim)
        elif op == "replace" and known:
            # the same id enqueued again replaces the job (what retry of a purged job does)
            old = await store.get(rng.choice(sorted(known)))
            if old is not None:
                again = make("c", payload={"again": step})
                again.id, again.version = old.id, old.version + 1
                await broker.enqueue([again], now)
        await assert_records_match(broker, store, known)
    assert known


async def test_records_outlive_retention_and_a_purge_deletes_them(kept):
    broker, store = kept
    epoch = await broker.acquire_epoch("leader", NOW)
    [job] = await broker.enqueue([make(idempotency_key="once")], NOW)
    [lease] = await broker.claim("n1", 1, 30, NOW + 1)
    [done] = await broker.finish([Finish(job.id, lease.token, "completed", "n1/w0")], NOW + 2)
    assert done is not None
    assert await broker.purge_finished(NOW + 10, epoch) == 1
    assert await broker.get(job.id) is None  # the queue let go of it
    record = await store.get(job.id)
    assert record is not None and record.dumps() == done.dumps()  # the record stays
    assert (await broker.depths())["completed"] == 0
    assert (await store.count_by_status())["completed"] == 1
    # its idempotency key went with the queue's copy: the key is free again
    [fresh] = await broker.enqueue([make(idempotency_key="once")], NOW + 11)
    assert fresh.id != job.id
    # a job the queue no longer holds is deleted from the Store alone
    assert await store.delete(job.id)
    assert await store.get(job.id) is None
    assert (await store.count_by_status())["completed"] == 0


async def test_all_records_are_the_union_of_the_status_indexes(kept, redis_server):
    """No index of every record is kept (each record is in exactly one status index):
    an unfiltered query merges the status indexes, page by page, in id order. An index
    of all records left by the previous version is neither read nor needed."""
    broker, store = kept
    raw = redis.Redis(port=redis_server.port)
    p = broker._p
    statuses = list(JobStatus)
    jobs = []
    for i in range(41):
        job = make("email" if i % 2 else "sms", payload={"i": i})
        job.status = statuses[(i * 5) % len(statuses)]
        job.owner = "alice" if i % 4 else "bob"
        jobs.append(job)
    await store.put_many(jobs)
    [queued] = await broker.enqueue([make()], NOW)
    assert not raw.exists(p + "rec-all")
    newest_first = sorted([*(j.id for j in jobs), queued.id], reverse=True)
    raw.zadd(p + "rec-all", {"0" * 26: 0, newest_first[3]: 0})  # as the previous version left it
    for limit, owner in ((3, None), (1, None), (50, None), (2, "alice"), (5, "bob")):
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.query(JobQuery(limit=limit, cursor=cursor, owner=owner))
            seen += [j.id for j in page.jobs]
            assert len(page.jobs) <= limit
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        every = {j.id: j.owner for j in jobs} | {queued.id: None}
        assert seen == [i for i in newest_first if owner is None or every[i] == owner]
    assert await store.delete(newest_first[3])
    assert raw.zscore(p + "rec-all", newest_first[3]) is None
    assert newest_first[3] not in [j.id for j in (await store.query(JobQuery(limit=50))).jobs]
    raw.close()


async def test_a_filtered_listing_merges_the_status_indexes_without_losing_a_record(kept):
    """A filter that refuses most records reads past where one status index's piece
    ended: the merge must not step over that index's records it has not read yet."""
    broker, store = kept
    rng = random.Random(5)
    statuses = [JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED]
    jobs = []
    for i in range(90):
        job = make(payload={"i": i})
        job.status = rng.choice(statuses)
        job.owner = rng.choice(["alice", "bob", "carol", "dave"])
        jobs.append(job)
    await store.put_many(jobs)
    for owner in ("alice", "bob", None):
        for limit in (1, 2, 3, 7):
            seen: list[str] = []
            cursor = None
            while True:
                page = await store.query(JobQuery(limit=limit, cursor=cursor, owner=owner))
                seen += [j.id for j in page.jobs]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            want = sorted((j.id for j in jobs if owner is None or j.owner == owner), reverse=True)
            assert seen == want, (owner, limit)


async def test_a_filter_refusing_most_records_reads_the_status_indexes_in_whole_chunks(
    kept, redis_server
):
    """An owner filter over the merged status indexes reads them in chunks, not in pieces
    of the one or two records a small page still wants: those examined an id or two for
    each read of every index (8 reads, 8 counts and a sort), 1,000 reads where 8 do.
    Counted by Redis's command statistics (no timing)."""
    broker, store = kept
    raw = redis.Redis(port=redis_server.port)
    statuses = list(JobStatus)
    jobs = []
    for i in range(1000):
        job = make(payload={"i": i})
        job.status = statuses[i % len(statuses)]
        job.owner = "alice"
        jobs.append(job)
    await store.put_many(jobs)

    def reads() -> int:
        stat = raw.info("commandstats").get("cmdstat_zrevrangebylex", {})
        return int(stat.get("calls", 0))

    before = reads()
    page = await store.query(JobQuery(limit=1, owner="bob"))
    assert page.jobs == [] and page.next_cursor is None
    assert reads() - before <= 2 * len(statuses) + 1
    page = await store.query(JobQuery(limit=1, owner="alice"))
    assert [j.id for j in page.jobs] == [max(j.id for j in jobs)]
    raw.close()


async def test_the_store_leaves_a_job_the_broker_holds_to_the_broker(kept):
    broker, store = kept
    [job] = await broker.enqueue([make()], NOW)
    newer = Job.loads(job.dumps())
    newer.status, newer.version = JobStatus.COMPLETED, job.version + 5
    await store.put_many([newer])  # the Broker's copy is never older than one handed out
    assert (await store.get(job.id)).status == JobStatus.PENDING  # type: ignore[union-attr]
    assert not await store.delete(job.id)  # deleted through the Broker first
    [lease] = await broker.claim("n1", 1, 30, NOW + 1)
    assert lease.job.id == job.id
    assert await broker.delete(job.id)
    record = await store.get(job.id)
    assert record is not None and record.status == JobStatus.RUNNING
    assert await store.delete(job.id)
    await assert_records_match(broker, store, {job.id})


async def test_a_store_on_another_connection_is_copied_to_by_the_recorder(redis_server):
    prefix = "k" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    other = await RedisStore.open(redis_server.url, prefix=prefix)
    plain = await RedisBroker.open(redis_server.url, prefix=prefix, connection=broker.connection)
    try:
        assert not broker.writes_records_of(other)  # it cannot know the two share a server
        assert not plain.writes_records_of(
            await RedisStore.open(redis_server.url, prefix=prefix, connection=broker.connection)
        )
    finally:
        await other.close()
        await broker.close()


async def test_a_node_on_redis_alone_records_through_the_broker(redis_server):
    settings = Settings(
        redis_url=redis_server.url,
        redis_key_prefix="k" + uuid.uuid4().hex[:12],
        node_id="kept",
        worker_count=4,
    )
    broker, store = await open_backends(settings)
    node = Node(settings, broker, store)
    try:
        assert broker.writes_records_of(store) and not node.recorder.copies
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            jobs = await node.submit_many(
                [{"type": "echo", "payload": {"i": i}} for i in range(40)]
                + [{"type": "fail", "max_retries": 0}]
            )
            await wait_until(lambda: node.dispatcher.finished == len(jobs))
            counts = await store.count_by_status()
            assert counts["completed"] == 40 and counts["failed"] == 1
            for job in jobs:
                record = await store.get(job.id)
                assert record is not None and record.terminal
                assert record.attempts[-1].node_id == "kept"
                assert record.dumps() == (await broker.get(job.id)).dumps()  # type: ignore[union-attr]
            assert node.recorder.written == 0  # nothing was copied
            epoch = node.leadership.view.epoch
            assert epoch is not None
            assert await node.duties.reconcile(epoch, NOW + 1e9) == 0
            node.request_stop()
    finally:
        await broker.close()


async def test_brokers_with_and_without_the_records_share_one_queue(redis_server):
    """One key per job: a node with MongoDB and one without, on one prefix, lose no job."""
    prefix = "k" + uuid.uuid4().hex[:12]
    kept = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
    plain = await RedisBroker.open(redis_server.url, prefix=prefix)
    try:
        epoch = await kept.acquire_epoch("leader", NOW)
        a, b, c = await kept.enqueue([make(), make(), make(scheduled_at=NOW + 5)], NOW)
        [d] = await plain.enqueue([make()], NOW)
        assert [j.id for j in await plain.promote_due(NOW + 10, epoch)] == [c.id]
        leases = await plain.claim("n2", 2, 30, NOW + 10)
        assert [x.job.id for x in leases] == [a.id, b.id]
        done = await plain.finish(
            [Finish(x.job.id, x.token, "completed") for x in leases], NOW + 11
        )
        assert all(j is not None and j.status == JobStatus.COMPLETED for j in done)
        leases = await kept.claim("n1", 10, 30, NOW + 12)
        assert sorted(x.job.id for x in leases) == sorted([c.id, d.id])
        assert len(await kept.requeue_expired(NOW + 100, epoch, 5)) == 2
        depths = await kept.depths()
        assert depths["pending"] == 2 and depths["completed"] == 2 and depths["running"] == 0
    finally:
        await plain.close()
        await kept.close()


async def test_a_store_sharing_a_prefix_with_a_broker_without_records_is_told(redis_server):
    prefix = "k" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix)
    store = await RedisStore.open(redis_server.url, prefix=prefix, connection=broker.connection)
    try:
        stored = await broker.enqueue([make()], NOW)
        with pytest.raises(ValueError, match="records=True"):
            await store.put_many(stored)
    finally:
        await broker.close()


async def test_a_claim_of_more_than_a_thousand_index_arguments_lists_every_running_job(kept):
    """records_flush files the running index's entries in pieces of 1,000 arguments (500
    jobs), the first behind the member that keeps the index out of the listpack encoding:
    no job is left out at a piece's edge."""
    broker, store = kept
    jobs = await broker.enqueue([make(payload={"i": i}) for i in range(1100)], NOW)
    leases = await broker.claim("n1", 1100, 30, NOW + 1)
    assert len(leases) == 1100
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.query(
            JobQuery(statuses=frozenset({JobStatus.RUNNING}), limit=500, cursor=cursor)
        )
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted((j.id for j in jobs), reverse=True)


async def _window_ids(store: RedisStore, after: float | None, before: float | None) -> list[str]:
    """The ids a created_at window lists, one record a page (every cursor crossed)."""
    out: list[str] = []
    cursor = None
    while True:
        page = await store.query(
            JobQuery(created_after=after, created_before=before, limit=1, cursor=cursor)
        )
        out += [job.id for job in page.jobs]
        if page.next_cursor is None or len(out) > 50:
            return out
        cursor = page.next_cursor


async def test_a_record_whose_id_tells_its_created_at_is_listed_by_windows_without_its_entry(
    kept, redis_server
):
    """A record whose id starts with its created_at's milliseconds (every submission's) is
    not filed in the created_at index (``layout.ID_ALPHABET``): a window finds it as a
    range of ids. Records the index holds (ids a caller chose, a created_at the id does not
    tell) and records filed before this, all in the index (an upgrade), are listed too,
    each once, in the windows' exact bounds."""
    broker, store = kept
    raw = redis.Redis(port=redis_server.port)
    gen = IdGenerator()
    told = [validate_submission({"type": "noop"}, NOW + i, ids=gen) for i in range(4)]
    custom = validate_submission({"type": "noop"}, NOW + 1.5, ids=gen)
    custom.id = "custom-1"
    late = validate_submission({"type": "noop"}, NOW + 2.5, ids=gen)
    late.created_at = NOW + 2.75  # its id tells NOW + 2.5
    jobs = [*told, custom, late]
    await broker.enqueue(jobs, NOW + 10)
    index = broker._p + "rec-created"
    assert {m.decode() for m in raw.zrange(index, 0, -1)} == {custom.id, late.id}
    windows = [
        (NOW + 1, NOW + 3),
        (NOW + 1.5, None),
        (None, NOW + 2.75),
        (NOW + 2.75, NOW + 2.7500001),
        (NOW + 2.5, NOW + 2.5000001),
        (NOW - 10, NOW),
        (None, None),
    ]

    def expected(after: float | None, before: float | None) -> list[str]:
        inside = [
            j.id
            for j in jobs
            if (after is None or j.created_at >= after)
            and (before is None or j.created_at < before)
        ]
        return sorted(inside, reverse=True)

    for after, before in windows:
        assert await _window_ids(store, after, before) == expected(after, before), (after, before)
    # records filed as before this layout: every one in the created_at index
    raw.zadd(index, {j.id: repr(j.created_at) for j in told})
    for after, before in windows:
        assert await _window_ids(store, after, before) == expected(after, before), (after, before)
    raw.close()


async def test_ids_sharing_a_created_at_are_each_told_or_indexed_whatever_their_order(
    kept, redis_server
):
    """The script remembers the last created_at text it read and the time characters
    of the ids made then (``created_by_id`` in layout.py), from one job and one call to
    the next: an id that does not tell it, before or after one that does, in the same
    call or the next, is still filed in the created_at index, and only such ids are."""
    broker, _ = kept
    raw = redis.Redis(port=redis_server.port)
    gen = IdGenerator()

    def job(at: float, custom: str | None = None) -> Job:
        made = validate_submission({"type": "noop"}, at, ids=gen)
        if custom is not None:
            made.id = custom
        return made

    later = NOW + 7.125
    first = [job(NOW, "custom-a"), job(NOW), job(NOW, "custom-b"), job(NOW)]
    second = [job(NOW), job(NOW, "custom-c"), job(later), job(later, "custom-d")]
    # an id of ULID characters made at another time (one millisecond off; by a generator
    # of its own, whose ids never go back in time), and one too short
    off = job(later)
    off.id = IdGenerator().new(later + 0.001)
    third = [job(later, "custom-e"), off, job(later), job(later, "0000")]
    for jobs in (first, second, third):
        await broker.enqueue(jobs, NOW + 10)
    index = broker._p + "rec-created"
    assert {m.decode() for m in raw.zrange(index, 0, -1)} == {
        "custom-a", "custom-b", "custom-c", "custom-d", "custom-e", off.id, "0000",
    }  # fmt: skip
    raw.close()


async def test_ids_that_start_with_time_characters_and_then_do_not_are_indexed(kept, redis_server):
    """An id read before any id told its created_at (``id_time`` in layout.py) whose
    first characters are of the ids' alphabet and a later one is not, or that ends
    before the time characters do, is filed in the created_at index, not refused."""
    broker, _ = kept
    raw = redis.Redis(port=redis_server.port)
    gen = IdGenerator()
    odd = ["0000", "00000000-x", "012345678", "000000000u"]
    for i, custom in enumerate(odd):
        made = validate_submission({"type": "noop"}, NOW + 20 + i, ids=gen)
        made.id = custom
        await broker.enqueue([made], NOW + 30)
    index = broker._p + "rec-created"
    assert {m.decode() for m in raw.zrange(index, 0, -1)} == set(odd)
    raw.close()


async def test_a_record_keeps_its_status_and_version_in_m_alone(kept, redis_server):
    """The job hash holds no v or s beside m (``layout.RETIRED_FIELDS``) and q is
    ``HELD_WITH_RECORDS``. A hash as an earlier layout wrote it (q '1' with v and s beside
    m) is read by its m once a move has made its v and s stale: listed, guarded against
    an older snapshot and deleted by the status and version m holds."""
    broker, store = kept
    raw = redis.Redis(port=redis_server.port)
    a, b = await broker.enqueue([make(), make()], NOW)
    key = broker._p + "job:"
    assert raw.hmget(key + a.id, "v", "s", "q") == [None, None, b"r"]
    # b as an earlier layout left it
    raw.hset(key + b.id, mapping={"q": "1", "v": str(b.version), "s": "pending"})
    leases = await broker.claim("n1", 2, 30, NOW + 1)
    await broker.finish([Finish(x.job.id, x.token, "completed") for x in leases], NOW + 2)
    assert raw.hmget(key + a.id, "v", "s") == [None, None]
    assert raw.hmget(key + b.id, "v", "s") == [str(b.version).encode(), b"pending"]  # stale
    done = frozenset({JobStatus.COMPLETED})
    assert sorted(j.id for j in (await store.query(JobQuery(statuses=done))).jobs) == sorted(
        [a.id, b.id]
    )
    assert (await store.query(JobQuery(statuses=frozenset({JobStatus.PENDING})))).jobs == []
    older = Job.loads(b.dumps())
    older.version = b.version + 1  # newer than the stale v, older than m's
    await store.put_many([older])  # held: left to the Broker
    assert await broker.delete(b.id)  # lets go of it: the record stays, without q
    await store.put_many([older])  # older than the record's m: refused
    record = await store.get(b.id)
    assert record is not None and record.status == JobStatus.COMPLETED
    assert record.version > older.version
    assert await store.delete(b.id)
    assert raw.zscore(broker._p + "rec-st:completed", b.id) is None
    assert [j.id for j in (await store.query(JobQuery(statuses=done))).jobs] == [a.id]
    raw.close()
