"""The queue on Redis: each Broker move is one Lua script (see ``lua/``)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import redis

from ...jobs import MAX_PRIORITY, MIN_PRIORITY, Job, JobStatus
from .. import transitions
from ..base import (
    Broker,
    ClaimScope,
    FencedError,
    Finish,
    Lease,
    ProgressReport,
    QueueState,
    RateLimit,
    StateConflict,
    Store,
    Tombstone,
)
from ..dependencies import UnknownDependency
from .codec import (
    BSEP,
    RS,
    SEP,
    as_text,
    check_name,
    decode_many,
    enc,
    encode_many,
    enqueue_arg,
    enqueue_args_many,
    hash_tag,
    lazy_job,
    num,
    pack_values,
    split_reply,
)
from .scripts import LuaScript, OnRedis, broker_library, broker_script
from .store import RedisStore
from .wire import RedisConnection

#: Cron ticks remembered per name; older ones are refused by a floor instead.
TICKS_KEPT = 1000

_FINISH_OUTCOMES = frozenset({"completed", "failed", "timeout", "released"})


def _scope_args(scope: ClaimScope | None) -> list[str]:
    """A claim's scope as claim.lua reads it: any-type flag, types, queues (see there)."""
    if scope is None:
        return ["1", "", "", ""]
    types = (
        ["1", ""]
        if scope.types is None
        else ["0", SEP.join(check_name(t, "job type") for t in sorted(scope.types))]
    )
    # a queue named twice is served once, as by the other Brokers (claim.lua would take its
    # due jobs once per mention: two leases of one job)
    queues = (
        ""
        if scope.queues is None
        else SEP.join(check_name(q, "queue") for q in dict.fromkeys(scope.queues))
    )
    limits = SEP.join(f"{check_name(q, 'queue')}{SEP}{int(most)}" for q, most in scope.limits)
    return [*types, queues, limits]


def _fenced(exc: redis.ResponseError, epoch: int) -> FencedError | None:
    message = str(exc)
    if message.startswith("FENCED "):
        return FencedError(epoch, int(message.split()[1]))
    return None


#: Random bytes in a lease token (``new_token``'s 12, written as 24 hex digits).
TOKEN_BYTES = 12


def fresh_tokens(n: int) -> str:
    """``n`` fresh lease tokens joined by ``SEP``, each as ``new_token`` makes one, from
    one read of the system's randomness for all (a claim asking for 20 jobs made 20
    reads: 25 us against 6 us for one)."""
    hexed = os.urandom(TOKEN_BYTES * n).hex()
    step = 2 * TOKEN_BYTES
    return SEP.join([hexed[i : i + step] for i in range(0, len(hexed), step)])


#: Workers' ids as JSON texts, by id: a node has a few workers and each finish item names
#: one (json.dumps cost 0.4 us, half of an item's packing).
_worker_texts: dict[str, str] = {}
_WORKER_TEXTS_MAX = 4096


def _worker_text(worker_id: str) -> str:
    """``json.dumps(worker_id)``, remembered (a str's)."""
    if type(worker_id) is not str:
        return json.dumps(worker_id)
    text = _worker_texts.get(worker_id)
    if text is None:
        text = json.dumps(worker_id)
        if len(_worker_texts) >= _WORKER_TEXTS_MAX:
            _worker_texts.clear()
        _worker_texts[worker_id] = text
    return text


class RedisBroker(OnRedis, Broker):
    """The queue on Redis.

    With ``records=True`` the Broker also keeps the job records of a
    ``RedisStore`` on its prefix (a cluster on Redis alone): every script that
    moves a job writes the job's record and its indexes in the same atomic step,
    so the node's recorder has nothing left to copy. A separate Store write per
    move cost as much Redis time as the claim or the finish itself, and as
    much Python time again to encode; this way a record costs one HMGET and
    one HSET inside the move, and records and queue can never disagree.

    With ``server_clock=True`` (what ``open_backends`` uses) every lease and
    promotion decision is taken on Redis's own clock (``TIME`` inside the
    scripts): a lease's expiry is Redis's time plus the lease seconds, and the
    leader reaps a lease only once Redis's time has passed it, so no two
    nodes' clocks are compared. The ``now`` a caller passes then only stamps
    the job's fields (``started_at``, attempt times), and ``Lease.expires_at``
    is the caller's estimate. Without it (the default, for tests that drive a
    virtual time) the caller's ``now`` decides, as in the reference Broker.

    Either way a job is the hash ``P job:<id>``, so nodes with and without
    ``records`` find the same jobs. A ``RedisStore`` on the prefix of a Broker
    without ``records`` would share its hashes and is not supported
    (``open_backends`` sets ``records`` whenever the Store is Redis).
    """

    name = "redis"
    #: ``enqueue`` hands back each job stored as given (its status unchanged) itself, not
    #: a copy: what a caller made of it while the call ran still holds (``Node.submit_many``).
    hands_back_sent_jobs = True

    def __init__(
        self,
        connection: RedisConnection,
        prefix: str = "jobtrio",
        *,
        owns_connection: bool = True,
        records: bool = False,
        server_clock: bool = False,
    ) -> None:
        self.connection = connection
        self.server_clock = server_clock
        self._clock_flag = "1" if server_clock else ""
        self.prefix = prefix
        self.records = records
        self._p = hash_tag(prefix)
        self._keys = [self._p]
        self._owns = owns_connection
        client = connection.client

        def script(name: str) -> LuaScript:
            return LuaScript(
                client, broker_script(name, records), broker_library(name, records, self._p), name
            )

        self._enqueue = script("enqueue")
        self._enqueue_deps = script("enqueue_deps")
        self._enqueue_workflow = script("enqueue_workflow")
        self._claim = script("claim")
        self._enqueue_claim = script("enqueue_claim")
        self._renew = script("renew")
        self._finish = script("finish")
        self._progress = script("progress")
        self._cancel = script("cancel")
        self._retry = script("retry")
        self._delete = script("delete")
        self._get = script("get")
        self._running = script("running")
        self._promote = script("promote")
        self._requeue = script("requeue")
        self._purge = script("purge")
        self._finished = script("finished")
        self._claim_tick = script("claim_tick")
        self._fire_tick = script("fire_tick")
        self._restore = script("restore")
        self._queue_set = script("queue_set")
        self._queue_info = script("queue_info")
        self._revive = script("revive")

    def writes_records_of(self, store: Store) -> bool:
        return (
            self.records
            and isinstance(store, RedisStore)
            and store.prefix == self.prefix
            and store.connection is self.connection
        )

    async def _leader_call(self, script: Any, args: Sequence[Any], epoch: int) -> Any:
        try:
            return await self._call(script, args)
        except redis.ResponseError as exc:
            fenced = _fenced(exc, epoch)
            if fenced is not None:
                raise fenced from None
            raise

    # -- producers --------------------------------------------------------------
    @staticmethod
    def _encode(jobs: Sequence[Job], now: float) -> list[tuple[str, list[str]]]:
        """Each job's (b, values of m) as it will be filed: waiting unless terminal (and
        ``waiting`` with dependencies: the script settles it against its parents)."""
        return encode_many(
            jobs,
            [
                job.status
                if job.terminal
                else JobStatus.WAITING
                if job.depends_on
                else transitions.waiting_status(job, now)
                for job in jobs
            ],
        )

    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        if not jobs:
            return []
        encoded = self._encode(jobs, now)
        keyed_workflow = jobs[0].workflow is not None and jobs[0].idempotency_key is not None
        if keyed_workflow or any(job.depends_on for job in jobs):
            # every header full: enqueue_checked.lua reads each job's (enqueue_fields)
            args = [num(now)]
            for job, (body, values) in zip(jobs, encoded, strict=True):
                args += enqueue_arg(job, body, values)
            try:
                docs = await self._call(
                    self._enqueue_workflow if keyed_workflow else self._enqueue_deps, args
                )
            except redis.ResponseError as exc:
                if not str(exc).startswith("NODEP "):
                    raise
                _, job_id, parent = str(exc).split()
                raise UnknownDependency(job_id, parent) from None
            return [Job.loads(doc) for doc in docs]
        args = self._enqueue_args(jobs, encoded, now)
        return self._enqueued(jobs, encoded, await self._call(self._enqueue, args), now)

    @staticmethod
    def _enqueue_args(
        jobs: Sequence[Job], encoded: list[tuple[str, list[str]]], now: float
    ) -> list[Any]:
        """enqueue.lua's arguments (enqueue_claim.lua's first part): now, then the jobs'
        (a job sharing the header values of the one before sends its id alone)."""
        return [num(now), *enqueue_args_many(jobs, encoded)]

    @staticmethod
    def _enqueued(
        jobs: Sequence[Job], encoded: list[tuple[str, list[str]]], reply: bytes, now: float
    ) -> list[Job]:
        # '' is a job stored as sent, else the one holding its key. A job stored as sent
        # with the status it came with is handed back itself: it is the stored job, and a
        # LazyJob of its raw values would be parsed again by the first reader of its
        # fields (the job.submitted event, the API's answer): 1000 parses a batch.
        return [
            Job.loads(held)
            if held
            else job
            if job.terminal or job.status is transitions.waiting_status(job, now)
            else lazy_job(body, values)
            for job, (body, values), held in zip(jobs, encoded, reply.split(BSEP), strict=True)
        ]

    async def enqueue_and_claim(
        self,
        jobs: Sequence[Job],
        now: float,
        node_id: str,
        n: int,
        lease_seconds: float,
        scope: ClaimScope | None = None,
    ) -> tuple[list[Job], list[Lease] | None]:
        """One script (enqueue_claim.lua): the enqueue, then the claim, in one round trip.
        Jobs with dependencies or a keyed workflow go the two-move way (their own scripts)."""
        plain = not (jobs and jobs[0].workflow is not None and jobs[0].idempotency_key is not None)
        if not jobs or n <= 0 or not plain or any(job.depends_on for job in jobs):
            return await super().enqueue_and_claim(jobs, now, node_id, n, lease_seconds, scope)
        if scope is not None and scope.queues == ():
            return await self.enqueue(jobs, now), []
        encoded = self._encode(jobs, now)
        enqueue_args = self._enqueue_args(jobs, encoded, now)
        claim_args, expires_at = self._claim_args(node_id, n, lease_seconds, now, scope)
        reply = await self._call(self._enqueue_claim, [str(len(jobs)), *enqueue_args, *claim_args])
        filed, leased = reply
        return self._enqueued(jobs, encoded, filed, now), self._leases(leased, expires_at)

    # -- workers ----------------------------------------------------------------
    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        if n <= 0 or (scope is not None and scope.queues == ()):
            return []
        args, expires_at = self._claim_args(node_id, n, lease_seconds, now, scope)
        return self._leases(await self._call(self._claim, args), expires_at)

    def _claim_args(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None,
    ) -> tuple[list[str], float]:
        expires_at = now + lease_seconds
        tokens = fresh_tokens(n)
        args = [num(now), json.dumps(node_id), num(expires_at), str(n), tokens]
        args.append(num(lease_seconds) if self.server_clock else "")
        args += _scope_args(scope)
        return args, expires_at

    @staticmethod
    def _leases(reply: list[bytes], expires_at: float) -> list[Lease]:
        """The leases of a claim's reply: token, b and m of each job."""
        if not reply:
            return []
        # a worker needs every field: parsed here, whole, all the reply's jobs at once
        jobs = decode_many(reply[1::3], reply[2::3])
        return [
            Lease(job, token.decode(), expires_at)
            for token, job in zip(reply[::3], jobs, strict=True)
        ]

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        if not leases:
            return []
        pairs = SEP.join(
            check_name(job_id, "job id") + SEP + (token if SEP not in token else "")
            for job_id, token in leases
        )
        args = [num(now + lease_seconds), pairs]
        if self.server_clock:
            args.append(num(lease_seconds))
        reply = await self._call(self._renew, args)
        return [i.decode() for i in split_reply(reply)]

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        if not items:
            return []
        args = [num(now)]
        for item in items:
            if item.outcome not in _FINISH_OUTCOMES:
                raise ValueError(f"unknown attempt outcome {item.outcome!r}")
            args.append(
                pack_values(
                    (
                        check_name(item.job_id, "job id"),
                        item.token if SEP not in item.token else "",  # never a live token
                        item.outcome,
                        "" if item.worker_id is None else _worker_text(item.worker_id),
                        enc(item.result),
                        enc(item.error),
                        "" if item.retry_at is None else num(item.retry_at),
                    )
                )
            )
        # b and m of each item ('' for a stale token)
        reply: list[bytes] = await self._call(self._finish, args)
        # its header is all the finisher reads on the hot path (see LazyJob)
        return [
            lazy_job(body.decode(), m.decode().split(SEP)) if body else None
            for body, m in zip(reply[::2], reply[1::2], strict=True)
        ]

    async def progress(self, reports: Sequence[ProgressReport], now: float) -> list[Job | None]:
        if not reports:
            return []
        args = [num(now)]
        for report in reports:
            token = report.token if SEP not in report.token else ""  # never a live token
            args.append(
                SEP.join((check_name(report.job_id, "job id"), token, enc(report.progress)))
            )
        reply = await self._call(self._progress, args)
        return [None if doc is None else Job.loads(doc) for doc in reply]

    # -- operators ---------------------------------------------------------------
    async def cancel(self, job_id: str, now: float) -> Job | None:
        args = [num(now), job_id, json.dumps(transitions.CANCELLED_ERROR)]
        reply = await self._call(self._cancel, args)
        return None if reply is None else Job.loads(reply)

    async def retry(self, job_id: str, now: float) -> Job | None:
        reply = await self._call(self._retry, [num(now), job_id])
        if reply is None:
            return None
        if isinstance(reply, list):
            job = Job.loads(reply[1])
            raise StateConflict(job, f"job {job_id} is {job.status}, not failed or cancelled")
        return Job.loads(reply)

    async def delete(self, job_id: str) -> bool:
        return bool(await self._call(self._delete, [job_id]))

    async def get(self, job_id: str) -> Job | None:
        [doc] = await self._call(self._get, [job_id])
        return None if doc is None else Job.loads(doc)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            return {}
        docs = await self._call(self._get, list(job_ids))
        return {i: Job.loads(d) for i, d in zip(job_ids, docs, strict=True) if d is not None}

    async def depths(self) -> dict[str, int]:
        client, key = self.connection.client, self._p + "counts"
        raw = await self.connection.run(lambda: client.hgetall(key))
        counts = {str(s): 0 for s in JobStatus}
        for status, n in raw.items():
            counts[as_text(status)] = int(n)
        return counts

    async def _info(self) -> tuple[set[str], dict[str, RateLimit], dict[str, list[int]]]:
        """(paused queues, limits, jobs per priority 1..10 of each (queue, type) set)."""
        paused, limits, sets = await self._call(self._queue_info, [])
        flat = [as_text(x) for x in limits]
        out_limits = {}
        for name, spec in zip(flat[::2], flat[1::2], strict=True):
            jobs, per = spec.split(SEP)
            out_limits[name] = RateLimit(int(jobs), float(per))
        counts = {as_text(sets[i]): [int(c) for c in sets[i + 1]] for i in range(0, len(sets), 2)}
        return {as_text(q) for q in paused}, out_limits, counts

    async def pending_by_priority(self) -> dict[int, int]:
        # one ZCOUNT a priority band of each (queue, type) pending set (queue_info.lua)
        _, _, sets = await self._info()
        counts = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
        for bands in sets.values():
            for priority, n in zip(range(1, 11), bands, strict=True):
                counts[priority] += n
        return counts

    async def queues(self) -> list[QueueState]:
        paused, limits, sets = await self._info()
        out: dict[str, QueueState] = {}
        for member, bands in sets.items():
            queue, job_type = member.split(SEP, 1)
            out.setdefault(queue, QueueState(queue)).pending[job_type] = sum(bands)
        for name in paused | set(limits):
            state = out.setdefault(name, QueueState(name))
            state.paused = name in paused
            state.rate_limit = limits.get(name)
        return [out[name] for name in sorted(out)]

    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
        epoch: int | None = None,
    ) -> QueueState:
        check_name(name, "queue")
        if clear_rate_limit:
            limit = "-"
        elif rate_limit is not None:
            limit = f"{int(rate_limit.jobs)}{SEP}{num(float(rate_limit.per))}"
        else:
            limit = ""
        flag = "" if paused is None else ("1" if paused else "0")
        args = [name, flag, limit, "" if epoch is None else str(epoch)]
        is_paused, spec = await self._leader_call(self._queue_set, args, epoch or 0)
        text = as_text(spec)
        state = QueueState(name, as_text(is_paused) == "1")
        if text:
            jobs, per = text.split(SEP)
            state.rate_limit = RateLimit(int(jobs), float(per))
        return state

    async def running(self) -> list[Lease]:
        reply = await self._call(self._running, [])
        return [
            Lease(Job.loads(reply[i + 2]), as_text(reply[i]), float(reply[i + 1]))
            for i in range(0, len(reply), 3)
        ]

    # -- leader duties -----------------------------------------------------------
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        client, key = self.connection.client, self._p + "epoch"
        return int(await self.connection.run(lambda: client.incr(key)))

    async def current_epoch(self) -> int:
        client, key = self.connection.client, self._p + "epoch"
        value = await self.connection.run(lambda: client.get(key))
        return 0 if value is None else int(value)

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        args = [
            num(now),
            str(epoch),
            str(limit),
            self._clock_flag,
            "0",
            num(grace) if grace else "",
        ]
        reply = await self._leader_call(self._promote, args, epoch)
        if not reply:
            return []
        # the leader reads their headers only (count, recorder): LazyJobs, as finish answers
        return [
            lazy_job(body, m.split(SEP))
            for body, m in (record.split(SEP, 1) for record in reply.decode().split(RS))
        ]

    async def promote_due_count(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> int:
        # the script reads no body and answers a number (promote_due: 1,000 documents)
        args = [
            num(now),
            str(epoch),
            str(limit),
            self._clock_flag,
            "1",
            num(grace) if grace else "",
        ]
        return int(await self._leader_call(self._promote, args, epoch))

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        template = transitions.POISON_ERROR.replace("{limit}", str(poison_limit))
        args = [
            num(now),
            str(epoch),
            str(poison_limit),
            str(limit),
            json.dumps(template),
            json.dumps("lease expired"),
            self._clock_flag,
        ]
        reply = await self._leader_call(self._requeue, args, epoch)
        return [Job.loads(d) for d in reply]

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        budget = "" if max_bytes is None else str(max_bytes)
        args = [num(older_than), str(limit), budget, *skip]
        docs = await self._call(self._finished, args)
        return [Job.loads(doc) for doc in docs]

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        forget = "" if tombstones_before is None else num(tombstones_before)
        args = [num(older_than), str(epoch), str(limit), forget]
        if only is None:
            args += ["", ""]
        else:
            args += ["1", SEP.join(f"{job_id}{SEP}{version}" for job_id, version in only)]
        return int(await self._leader_call(self._purge, args, epoch))

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        if not jobs:
            return []
        jobs = list(jobs)
        encoded = self._encode(jobs, now)
        args = [num(now), str(epoch)]
        for job, (body, values) in zip(jobs, encoded, strict=True):
            args += enqueue_arg(job, body, values)
        reply = await self._leader_call(self._restore, args, epoch)
        out: list[Job | Tombstone] = []
        retry_keyless: list[int] = []
        for i, (job, (body, values), answer) in enumerate(zip(jobs, encoded, reply, strict=True)):
            text = as_text(answer)
            if text == "":
                out.append(lazy_job(body, values))
            elif text[0] == "H":
                out.append(Job.loads(text[1:]))
            elif text[0] == "T":
                status, version, at = text[1:].split(SEP)
                out.append(Tombstone(job.id, JobStatus(status), int(version), float(at)))
            else:  # 'K': another job holds its idempotency key; it comes back without one
                out.append(job)
                retry_keyless.append(i)
        if retry_keyless:
            keyless = [dataclasses.replace(jobs[i], idempotency_key=None) for i in retry_keyless]
            for i, again in zip(
                retry_keyless, await self.restore(keyless, now, epoch), strict=True
            ):
                out[i] = again
        return out

    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        [(body, values)] = self._encode([job], now)
        args = [num(now), *enqueue_arg(job, body, values)]
        answer = as_text(await self._call(self._revive, args))
        if answer == "":
            return lazy_job(body, values)
        if answer[0] == "H":
            return Job.loads(answer[1:])
        if answer[0] == "T":
            status, version, at = answer[1:].split(SEP)
            return Tombstone(job.id, JobStatus(status), int(version), float(at))
        # 'K': another job holds its idempotency key; it comes back without one
        return await self.revive(dataclasses.replace(job, idempotency_key=None), now)

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        args = [name, num(float(tick)), str(epoch), str(TICKS_KEPT)]
        return bool(await self._leader_call(self._claim_tick, args, epoch))

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        [(body, values)] = self._encode([job], now)
        args = [name, num(float(tick)), str(epoch), str(TICKS_KEPT), num(now)]
        args += enqueue_arg(job, body, values)
        reply = await self._leader_call(self._fire_tick, args, epoch)
        if reply is None:
            return None
        held = as_text(reply)
        return Job.loads(held) if held else lazy_job(body, values)

    # -- life cycle ----------------------------------------------------------------
    async def ping(self) -> None:
        await self.connection.ping()

    async def delete_keyspace(self) -> None:
        """Delete every key under this Broker's prefix: the queue, the records, the events.

        For benchmarks and tests that give each run a prefix of its own; a
        deployment never needs it (``FINISHED_JOB_TTL`` purges finished jobs).
        """
        client, pattern = self.connection.client, self._p + "*"

        def delete() -> None:
            batch = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)

        await self.connection.run(delete)

    async def close(self) -> None:
        if self._owns:
            await self.connection.close()
