"""What the contract suite cannot see of the SQLite backend: the file itself.

The contract suite (test_backend_contract.py) pins behaviour within one open
Broker or Store. These tests pin what a file adds: jobs surviving a close and
a killed process, the Broker and Store sharing one file, enqueue being all or
nothing even when SQLite fails half-way through a batch, two connections on
one file seeing one queue without corrupting it, and I/O failures surfacing
as ``BackendUnavailable``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest
import trio

from jobtrio.backends import sqlite as sqlite_backend
from jobtrio.backends.base import BackendUnavailable, FencedError, Finish, JobQuery, NodeRecord
from jobtrio.backends.sqlite import SqliteBroker, SqliteStore
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission
from tests.reference import matches_the_reference

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(job_type: str = "noop", now: float = NOW, **fields) -> Job:
    return validate_submission({"type": job_type, **fields}, now, ids=ids)


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "jobtrio.db")


async def drain(broker: SqliteBroker, batch: int = 100) -> list[Job]:
    claimed = []
    while leases := await broker.claim("n", batch, 30, NOW):
        claimed += [lease.job for lease in leases]
    return claimed


# --------------------------------------------------------------------------- durability


async def test_queue_survives_close_and_reopen_in_order(db_path):
    broker = await SqliteBroker.open(db_path)
    jobs = [make(priority=p, payload={"i": i}) for i, p in enumerate([1, 5, 10, 5, 10, 1, 5])]
    await broker.enqueue(jobs, NOW)
    [first] = await broker.claim("n", 1, 30, NOW)  # the first priority-10 job is running
    epoch = await broker.acquire_epoch("leader", NOW)
    await broker.close()

    broker = await SqliteBroker.open(db_path)
    try:
        assert (await broker.get(first.job.id)).status == JobStatus.RUNNING
        assert [lease.job.id for lease in await broker.running()] == [first.job.id]
        assert [j.payload["i"] for j in await drain(broker)] == [4, 1, 3, 6, 0, 5]
        # the fencing epoch and the FIFO counter survive too
        assert await broker.current_epoch() == epoch
        assert await broker.acquire_epoch("next", NOW) == epoch + 1
        late = [make(payload={"i": i}) for i in range(3)]
        await broker.enqueue(late, NOW)
        assert [j.payload["i"] for j in await drain(broker)] == [0, 1, 2]
    finally:
        await broker.close()


async def test_store_survives_close_and_reopen(db_path):
    store = await SqliteStore.open(db_path)
    jobs = [make(payload={"i": i}) for i in range(5)]
    await store.put_many(jobs)
    await store.put_node(NodeRecord("n1", "127.0.0.1:1", "alive", 4, NOW, NOW, extra={"v": 1}))
    await store.add_election({"leader": "n1", "epoch": 3, "algorithm": "raft", "at": NOW})
    await store.close()

    store = await SqliteStore.open(db_path)
    try:
        page = await store.query(JobQuery(limit=10))
        assert [j.id for j in page.jobs] == [j.id for j in reversed(jobs)]
        assert (await store.get(jobs[0].id)).to_dict() == jobs[0].to_dict()
        [node] = await store.list_nodes()
        assert node == NodeRecord("n1", "127.0.0.1:1", "alive", 4, NOW, NOW, extra={"v": 1})
        assert await store.list_elections() == [
            {"leader": "n1", "epoch": 3, "algorithm": "raft", "at": NOW}
        ]
    finally:
        await store.close()


async def test_acknowledged_enqueue_survives_a_killed_process(db_path):
    """The guarantee the module docstring claims: WAL + synchronous=NORMAL vs kill -9."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys, trio
        from jobtrio.backends.sqlite import SqliteBroker
        from jobtrio.submission import validate_submission

        async def main():
            broker = await SqliteBroker.open({db_path!r})
            jobs = [validate_submission({{"type": "t", "payload": {{"i": i}}}}, {NOW})
                    for i in range(200)]
            await broker.enqueue(jobs, {NOW})
            await broker.claim("doomed", 10, 30, {NOW})
            print("acknowledged", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint

        trio.run(main)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "acknowledged", proc.stderr
    assert proc.returncode == -9

    broker = await SqliteBroker.open(db_path)
    try:
        depths = await broker.depths()
        assert depths["pending"] == 190 and depths["running"] == 10
        assert [j.payload["i"] for j in await drain(broker)] == list(range(10, 200))
    finally:
        await broker.close()


# --------------------------------------------------------------------------- one file


async def test_broker_and_store_share_one_file(db_path):
    broker = await SqliteBroker.open(db_path)
    store = await SqliteStore.open(db_path)
    try:
        stored = await broker.enqueue([make(payload={"i": i}) for i in range(3)], NOW)
        await store.put_many(stored)
        leases = await broker.claim("n", 3, 30, NOW)
        await store.put_many([lease.job for lease in leases])
        done = await broker.finish(
            [Finish(lease.job.id, lease.token, "completed") for lease in leases], NOW + 1
        )
        await store.put_many([j for j in done if j is not None])
        # each side counts only its own table
        assert (await broker.depths())["completed"] == 3
        assert (await store.count_by_status())["completed"] == 3
        epoch = await broker.acquire_epoch("a", NOW)
        assert await broker.purge_finished(NOW + 2, epoch) == 3
        assert (await broker.depths())["completed"] == 0
        assert (await store.count_by_status())["completed"] == 3
        assert await store.delete(done[0].id) is True
        assert await broker.get(done[1].id) is None  # purged from the queue only
    finally:
        await broker.close()
        await store.close()

    with sqlite3.connect(db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"queue", "broker_meta", "ticks", "jobs", "nodes", "elections"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_broker_and_store_open_concurrently_on_a_fresh_file(tmp_path):
    # Switching a fresh file to WAL is where SQLite answered "database is locked"
    # at once (no busy handler) to the second opener: a node's Broker and Store open
    # the same file together. Fifty fresh files, eight openers each, so the race is
    # met on most runs (9 of 10 here without the wait) rather than one in forty.
    for attempt in range(50):
        db_path = str(tmp_path / f"fresh-{attempt}.db")
        opened: list[SqliteBroker | SqliteStore] = []

        async def open_one(
            kind: type[SqliteBroker] | type[SqliteStore],
            path: str,
            into: list[SqliteBroker | SqliteStore],
        ) -> None:
            into.append(await kind.open(path))

        async with trio.open_nursery() as nursery:
            for kind in (SqliteBroker, SqliteStore) * 4:
                nursery.start_soon(open_one, kind, db_path, opened)
        for backend in opened:
            await backend.ping()
            await backend.close()
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --------------------------------------------------------------------------- atomicity


async def test_enqueue_is_all_or_nothing_when_a_job_cannot_be_stored(db_path):
    broker = await SqliteBroker.open(db_path)
    try:
        good = [make(payload={"i": i}) for i in range(5)]
        bad = make()
        bad.payload = {"not json": {1, 2}}  # serialisation fails mid-batch
        with pytest.raises(TypeError):
            await broker.enqueue([*good[:3], bad, *good[3:]], NOW)
        assert await broker.get_many([j.id for j in good]) == {}
        assert sum((await broker.depths()).values()) == 0
        await broker.enqueue(good, NOW)
        assert [j.payload["i"] for j in await drain(broker)] == list(range(5))
    finally:
        await broker.close()


async def test_enqueue_rolls_back_when_sqlite_fails_mid_batch(db_path):
    broker = await SqliteBroker.open(db_path)
    try:
        await broker.enqueue([make(payload={"i": -1})], NOW)
        # A trigger makes SQLite itself refuse the 4th row of the executemany,
        # after three rows (and the FIFO counter) were written in the transaction.
        with sqlite3.connect(db_path) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON queue WHEN NEW.doc LIKE '%\"boom\"%' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        jobs = [make(payload={"i": i}) for i in range(3)]
        jobs += [make(payload={"boom": True}), make(payload={"i": 3})]
        with pytest.raises(sqlite3.IntegrityError, match="refused"):
            await broker.enqueue(jobs, NOW)
        assert await broker.get_many([j.id for j in jobs]) == {}
        assert (await broker.depths())["pending"] == 1
        with sqlite3.connect(db_path) as conn:
            conn.execute("DROP TRIGGER refuse")
        del jobs[3]
        await broker.enqueue(jobs, NOW)
        assert [j.payload["i"] for j in await drain(broker)] == [-1, 0, 1, 2, 3]
    finally:
        await broker.close()


async def test_enqueue_of_an_idempotent_batch_is_atomic_with_the_keys(db_path):
    broker = await SqliteBroker.open(db_path)
    try:
        a = make(idempotency_key="k")
        bad = make()
        bad.payload = {"x": object()}
        with pytest.raises(TypeError):
            await broker.enqueue([a, bad], NOW)
        # the key was not taken by the failed batch
        b = make(idempotency_key="k")
        [stored] = await broker.enqueue([b], NOW)
        assert stored.id == b.id
    finally:
        await broker.close()


async def test_returned_jobs_are_copies(db_path):
    broker = await SqliteBroker.open(db_path)
    try:
        job = make(payload={"a": 1})
        [stored] = await broker.enqueue([job], NOW)
        stored.payload["a"] = 2
        job.payload["a"] = 3
        assert (await broker.get(job.id)).payload == {"a": 1}
        [lease] = await broker.claim("n", 1, 30, NOW)
        assert lease.job.payload == {"a": 1}
    finally:
        await broker.close()


# --------------------------------------------------------------------------- two connections


async def test_two_brokers_on_one_file_see_one_queue(db_path):
    b1 = await SqliteBroker.open(db_path)
    b2 = await SqliteBroker.open(db_path)
    try:
        await b1.enqueue([make(priority=1, payload={"i": 0})], NOW)
        await b2.enqueue([make(priority=10, payload={"i": 1})], NOW)
        await b1.enqueue([make(priority=1, payload={"i": 2})], NOW)
        [lease] = await b2.claim("n2", 1, 30, NOW)
        assert lease.job.payload["i"] == 1
        assert (await b1.get(lease.job.id)).status == JobStatus.RUNNING
        # a lease taken through one connection is honoured through the other
        assert await b1.renew([(lease.job.id, lease.token)], 30, NOW + 1) == []
        [done] = await b1.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 2)
        assert done.status == JobStatus.COMPLETED
        assert await b2.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 3) == [None]
        # FIFO holds across the two connections' enqueues
        assert [j.payload["i"] for j in await drain(b2)] == [0, 2]
        # one fencing epoch for the file
        e1 = await b1.acquire_epoch("a", NOW)
        e2 = await b2.acquire_epoch("b", NOW)
        assert e2 == e1 + 1 and await b1.current_epoch() == e2
        with pytest.raises(FencedError):
            await b1.promote_due(NOW, e1)
        assert await b1.claim_tick("cron", 60.0, e2) is True
        assert await b2.claim_tick("cron", 60.0, e2) is False
    finally:
        await b1.close()
        await b2.close()


async def test_two_brokers_claiming_concurrently_never_share_a_job(db_path):
    b1 = await SqliteBroker.open(db_path)
    b2 = await SqliteBroker.open(db_path)
    total = 2000
    try:
        jobs = [make(payload={"i": i}) for i in range(total)]
        for i in range(0, total, 250):
            await b1.enqueue(jobs[i : i + 250], NOW)
        claimed: dict[str, list[str]] = {"b1": [], "b2": []}

        async def worker(name: str, broker: SqliteBroker) -> None:
            while leases := await broker.claim(name, 7, 30, NOW):
                claimed[name] += [lease.job.id for lease in leases]
                done = await broker.finish(
                    [Finish(lease.job.id, lease.token, "completed") for lease in leases], NOW
                )
                assert all(j is not None for j in done)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker, "b1", b1)
            nursery.start_soon(worker, "b2", b2)
        everything = claimed["b1"] + claimed["b2"]
        assert len(everything) == total and set(everything) == {j.id for j in jobs}
        # (Which connection took how many is up to SQLite's lock retries: one may take all.)
        assert (await b2.depths())["completed"] == total
    finally:
        await b1.close()
        await b2.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --------------------------------------------------------------------------- failures


async def test_locked_beyond_busy_timeout_is_unavailable(db_path):
    broker = await SqliteBroker.open(db_path, busy_timeout=0.05)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(BackendUnavailable) as info:
            await broker.enqueue([make()], NOW)
        assert info.value.backend == "sqlite" and "locked" in info.value.reason
        holder.execute("ROLLBACK")
        [stored] = await broker.enqueue([make()], NOW)  # the connection is usable again
        assert (await broker.get(stored.id)) is not None
    finally:
        holder.close()
        await broker.close()


async def test_unopenable_or_foreign_file_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable):
        await SqliteBroker.open(str(tmp_path / "missing-dir" / "x.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(BackendUnavailable):
        await SqliteStore.open(str(junk))


async def test_closed_backend_is_unavailable(db_path):
    broker = await SqliteBroker.open(db_path)
    store = await SqliteStore.open(db_path)
    await broker.close()
    await store.close()
    with pytest.raises(BackendUnavailable):
        await broker.ping()
    with pytest.raises(BackendUnavailable):
        await store.get("x")
    await broker.close()  # closing twice is harmless


async def test_default_path_comes_from_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "from-env.db"))
    broker = await SqliteBroker.open()
    store = await SqliteStore.open()
    try:
        assert broker.path == store.path == str(tmp_path / "from-env.db")
    finally:
        await broker.close()
        await store.close()
    monkeypatch.delenv("SQLITE_PATH")
    broker = await SqliteBroker.open()
    await broker.close()
    assert (tmp_path / "jobtrio.db").exists()


@pytest.mark.parametrize(("by_queue", "index"), [(False, "queue_claim"), (True, "queue_by_name")])
@pytest.mark.parametrize("by_types", [False, True])
async def test_claim_walks_the_index_without_sorting(db_path, by_queue, by_types, index):
    """Claim cost must not grow with the queue: an index walk, no temp B-tree sort
    (every queue, or one; any type, or the node's)."""
    broker = await SqliteBroker.open(db_path)
    await broker.close()
    sql = sqlite_backend._claim_select(by_queue, by_types, False, False)
    args = (["default"] if by_queue else []) + (['["noop"]'] if by_types else []) + [100]
    with sqlite3.connect(db_path) as conn:
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert index in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("seed", [20240611, 1, 2, 3])
async def test_matches_the_memory_broker_step_by_step(db_path, seed):
    """The SQL moves give the reference Broker's documents, bit for bit, move by move
    (the same differential comparison the Redis Broker has; ``tests/reference.py``)."""
    broker = await SqliteBroker.open(db_path)
    try:
        await matches_the_reference(broker, seed, NOW + 0.123456)
    finally:
        await broker.close()


@pytest.mark.parametrize(
    ("where", "why"),
    [("missing/jobtrio.db", "does not exist"), (".", "it is a folder")],
)
async def test_a_file_that_cannot_open_is_named_with_why(tmp_path, where, why):
    # SQLite says only "unable to open database file": the operator needs the path and why
    path = str(tmp_path / where)
    for opener in (SqliteBroker.open, SqliteStore.open):
        with pytest.raises(BackendUnavailable) as refused:
            await opener(path)
        assert path in str(refused.value) and why in str(refused.value), refused.value
