"""The reference Broker as a test oracle: any Broker must answer as ``MemoryBroker`` does.

Used by the Redis tests (the Lua scripts re-implement ``transitions.py``) and
the SQLite tests (its SQL moves do too).
"""

from __future__ import annotations

import random

from jobtrio.backends.base import Broker, ClaimScope, Finish, RateLimit, StateConflict, Tombstone
from jobtrio.backends.memory import MemoryBroker
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission


def doc_of(job: Job | Tombstone | None) -> str | None:
    if isinstance(job, Tombstone):
        return repr(job)
    return None if job is None else job.dumps()


QUEUES = ("default", "a", "b")
TYPES = ("t", "u")


async def matches_the_reference(broker: Broker, seed: int, start: float) -> None:
    """Random operations on ``broker`` and a ``MemoryBroker`` give the same documents.

    Every move is held to the reference, including re-enqueueing a running
    copy (an open attempt inside a pending job), every finish outcome, the
    leader's restore of lost and purged jobs, and firing periodic ticks; jobs
    in three queues of two types, claims scoped by queue (in order or merged),
    type and per-queue caps, queues paused, resumed and rate-limited.
    """
    rng = random.Random(seed)
    gen = IdGenerator(random.Random(seed))
    memory = MemoryBroker()
    epoch = await broker.acquire_epoch("leader", start)
    assert await memory.acquire_epoch("leader", start) == epoch
    t = start
    known: list[str] = []
    held: dict[str, tuple[str, str]] = {}  # job id -> (memory token, redis token)

    async def both(name: str, *args, **kwargs):
        m_exc = r_exc = None
        m = r = None
        try:
            m = await getattr(memory, name)(*args, **kwargs)
        except StateConflict as exc:
            m_exc = exc
        try:
            r = await getattr(broker, name)(*args, **kwargs)
        except StateConflict as exc:
            r_exc = exc
        assert (m_exc is None) == (r_exc is None), name
        if m_exc is not None:
            assert m_exc.job.dumps() == r_exc.job.dumps()
        return m, r

    for step in range(600):
        t += rng.choice([0.0, 0.25, rng.uniform(0, 4)])
        op = rng.random()
        if op < 0.2:
            jobs = []
            for _ in range(rng.randint(1, 4)):
                fields = {"priority": rng.randint(1, 10), "payload": {"s": step, "x": rng.random()}}
                if rng.random() < 0.2:
                    fields["scheduled_at"] = t + rng.uniform(-2, 6)
                if rng.random() < 0.2:
                    fields["idempotency_key"] = f"k{rng.randint(0, 8)}"
                if rng.random() < 0.3:
                    fields["max_retries"] = rng.randint(0, 2)
                if rng.random() < 0.5:
                    fields["queue"] = rng.choice(QUEUES)
                job_type = rng.choice(TYPES)
                jobs.append(validate_submission({"type": job_type, **fields}, t, ids=gen))
            if known and rng.random() < 0.15:
                # the same id again, mid-flight: the stored job is replaced
                again = await memory.get(rng.choice(known))
                if again is not None:
                    jobs.append(again)
            m, r = await both("enqueue", jobs, t)
            assert [doc_of(j) for j in m] == [doc_of(j) for j in r]
            known += [j.id for j in m if j.id not in known]
            for j in jobs:
                held.pop(j.id, None)
        elif op < 0.4:
            n = rng.randint(1, 5)
            lease_for = rng.choice([1.0, 2.5, 10.0])
            scope = None
            if rng.random() < 0.6:
                types = rng.choice([None, frozenset({"t"}), frozenset({"u"}), frozenset(TYPES)])
                queues = rng.choice([None, tuple(rng.sample(QUEUES, rng.randint(0, 3)))])
                limits = tuple(
                    (q, rng.randint(0, 2)) for q in rng.sample(QUEUES, rng.randint(0, 2))
                )
                scope = ClaimScope(types, queues, limits)
            node = "node-" + str(rng.randint(1, 2))
            m, r = await both("claim", node, n, lease_for, t, scope)
            assert [(doc_of(x.job), x.expires_at) for x in m] == [
                (doc_of(x.job), x.expires_at) for x in r
            ]
            for a, b in zip(m, r, strict=True):
                held[a.job.id] = (a.token, b.token)
        elif op < 0.6 and held:
            items_m, items_r = [], []
            for job_id in rng.sample(sorted(held), rng.randint(1, min(3, len(held)))):
                mt, rt = held[job_id]
                if rng.random() < 0.1:
                    mt = rt = "stale"
                outcome = rng.choice(["completed", "failed", "timeout", "released"])
                retry_at = t + rng.uniform(0.5, 3) if rng.random() < 0.5 else None
                common = {
                    "worker_id": rng.choice([None, "w-1", "w-é"]),
                    "result": rng.choice([None, {"ok": [1, {}]}, []]),
                    "error": rng.choice([None, "boom", "ünïcode"]),
                    "retry_at": retry_at,
                }
                items_m.append(Finish(job_id, mt, outcome, **common))
                items_r.append(Finish(job_id, rt, outcome, **common))
            m = await memory.finish(items_m, t)
            r = await broker.finish(items_r, t)
            assert [doc_of(j) for j in m] == [doc_of(j) for j in r]
        elif op < 0.65 and held:
            chosen = rng.sample(sorted(held), min(2, len(held)))
            m = await memory.renew([(i, held[i][0]) for i in chosen], 5.0, t)
            r = await broker.renew([(i, held[i][1]) for i in chosen], 5.0, t)
            assert m == r
        elif op < 0.7 and known:
            m, r = await both("cancel", rng.choice(known), t)
            assert doc_of(m) == doc_of(r)
        elif op < 0.75 and known:
            ended = [
                i
                for i, j in (await memory.get_many(known)).items()
                if j.status in (JobStatus.FAILED, JobStatus.CANCELLED)
            ]
            pick = rng.choice(ended) if ended and rng.random() < 0.8 else rng.choice(known)
            m, r = await both("retry", pick, t)
            assert doc_of(m) == doc_of(r)
        elif op < 0.78 and known:
            m, r = await both("delete", rng.choice(known))
            assert m == r
        elif op < 0.81:
            queue = rng.choice(QUEUES)
            change = rng.choice(["pause", "resume", "limit", "clear"])
            if change == "limit":
                limit = RateLimit(rng.randint(1, 3), rng.choice([0.5, 2.0, 10.0]))
                m, r = await both("set_queue", queue, rate_limit=limit)
            elif change == "clear":
                m, r = await both("set_queue", queue, clear_rate_limit=True)
            else:
                m, r = await both("set_queue", queue, paused=change == "pause")
            assert m == r
        elif op < 0.86:
            m, r = await both("promote_due", t, epoch, limit=rng.randint(1, 5))
            assert [doc_of(j) for j in m] == [doc_of(j) for j in r]
        elif op < 0.94:
            m, r = await both("requeue_expired", t, epoch, poison_limit=3, limit=4)
            assert [doc_of(j) for j in m] == [doc_of(j) for j in r]
        elif op < 0.96:
            before = t - rng.choice([10.0, 1000.0])
            if rng.random() < 0.5:
                m, r = await both("purge_finished", t - 3, epoch, tombstones_before=before)
                assert m == r
            else:
                # with a separate Store: read what is due, then purge just those (some of
                # them, one at a version it no longer has)
                m, r = await both("finished_due", t - 3)
                assert sorted(map(doc_of, m)) == sorted(map(doc_of, r))
                only = [(j.id, j.version) for j in m if rng.random() < 0.8]
                if only and rng.random() < 0.3:
                    only[0] = (only[0][0], only[0][1] - 1)
                m, r = await both(
                    "purge_finished", t - 3, epoch, tombstones_before=before, only=only
                )
                assert m == r
        elif op < 0.98 and known:
            # the leader puts back what a Store record shows: held, purged or lost
            sent = []
            for job_id in rng.sample(known, min(len(known), rng.randint(1, 3))):
                job = validate_submission({"type": "t", "payload": {"r": step}}, t, ids=gen)
                job.id = job_id
                sent.append(job)
            sent.append(validate_submission({"type": "t"}, t, ids=gen))
            m, r = await both("restore", sent, t, epoch)
            assert [doc_of(j) for j in m] == [doc_of(j) for j in r]
            known += [j.id for j in sent if j.id not in known]
        else:
            tick = float(rng.randint(0, 5))
            job = validate_submission({"type": "t", "idempotency_key": f"tick:{tick}"}, t, ids=gen)
            m, r = await both("fire_tick", "sched", tick, job, epoch, t)
            assert doc_of(m) == doc_of(r)
            if m is not None and m.id not in known:
                known.append(m.id)
        if step % 25 == 0 or step == 599:
            m, r = await both("get_many", known)
            assert {k: v.dumps() for k, v in m.items()} == {k: v.dumps() for k, v in r.items()}
            m, r = await both("depths")
            assert m == r
            m, r = await both("pending_by_priority")
            assert m == r
            m, r = await both("queues")
            assert m == r
            m, r = await both("running")
            assert sorted((x.job.dumps(), x.expires_at) for x in m) == sorted(
                (x.job.dumps(), x.expires_at) for x in r
            )
