"""The Redis hot path's shortcuts are invisible: lazily parsed jobs and raw Store writes.

``RedisBroker.finish`` returns jobs that keep their storage document and
parse it only when a field beyond the header is read (``enqueue`` returns
the jobs it was handed, already whole, when it filed them as sent); the Store
writes that document as it came. Each test checks a shortcut against the slow
path it replaces: the same bytes, the same fields, the same behaviour under
copy, pickle, equality and mutation.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import socket
import struct
import uuid
from functools import partial
from typing import Any

import pytest
import redis
import trio

from jobtrio.backends.base import BackendUnavailable, ClaimScope, Finish, JobQuery
from jobtrio.backends.memory import MemoryBroker
from jobtrio.backends.redis import RedisBroker, RedisStore, codec, wire
from jobtrio.jobs import Attempt, IdGenerator, Job, JobStatus
from jobtrio.jsontext import orjson_exact
from jobtrio.submission import validate_submission
from tests.redis_backends import records_pair

NOW = 1_700_000_000.123456
JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
ids = IdGenerator()

#: Payloads and names that could fool a positional cut of the body.
AWKWARD = {
    "created_at": 1.5,
    "x": ',"created_at":2,"max_retries":9,"idempotency_key":"k"',
    "max_retries": [{"idempotency_key": None}],
    "unicode": 'żółw 🐢 \u2028 "quoted" \\ back',
    "precise": 1700000000.123456,
    "big_int": 2**64 + 1,
}


def make(job_type: str = "noop", **fields) -> Job:
    """A valid submission, then given ``job_type``: the API refuses control characters in a
    type, but the Broker must carry any string it is handed (the scripts reserve 0x1f)."""
    job = validate_submission({"type": "noop", **fields}, NOW, ids=ids)
    job.type = job_type
    return job


def is_unparsed(job: Job) -> bool:
    return codec.raw_of(job) is not None  # type: ignore[arg-type]


async def enqueued_lazily(broker: RedisBroker, jobs: list[Job]) -> list[Job]:
    """``jobs`` enqueued, as LazyJobs of the documents the scripts filed (what finish returns)."""
    stored = await broker.enqueue(jobs, NOW)
    return [codec.lazy_job(*codec.encode(job, job.status)) for job in stored]


pair = pytest.fixture(records_pair, name="pair")


def awkward_jobs() -> list[Job]:
    return [
        make(),
        make('type "with" quotes \\ and \x1f unit separator', payload=AWKWARD),
        make("ünïcode", payload=AWKWARD, idempotency_key=',"created_at":"k"' + uuid.uuid4().hex),
        make("t", timeout=0.1 + 0.2, max_retries=0, priority=10),
    ]


async def test_finished_jobs_are_the_reference_documents_unparsed(pair):
    broker, _ = pair
    memory = MemoryBroker()
    jobs = awkward_jobs()
    for b in (broker, memory):
        stored = await b.enqueue(jobs, NOW)
        if b is broker:
            # filed as sent, with their status: the jobs sent come back, nothing to parse
            assert all(s is j for s, j in zip(stored, jobs, strict=True))
            r_stored = stored
        else:
            m_stored = stored
    assert [j.dumps() for j in r_stored] == [j.dumps() for j in m_stored]
    leases = {b: await b.claim("n1", 10, 30.0, NOW + 1) for b in (broker, memory)}
    results = {}
    for b, held in leases.items():
        outcomes = ["completed", "failed", "timeout", "released"]
        results[b] = await b.finish(
            [
                Finish(
                    lease.job.id,
                    lease.token,
                    outcomes[i % 4],  # type: ignore[arg-type]
                    "n1/w0",
                    result={"r": AWKWARD} if i % 4 == 0 else None,
                    error=None if i % 4 == 0 else "boom \x00",
                    retry_at=NOW + 5 if i % 4 == 2 else None,
                )
                for i, lease in enumerate(sorted(held, key=lambda x: x.job.id))
            ],
            NOW + 2,
        )
    r_done, m_done = results[broker], results[memory]
    assert all(j is not None and is_unparsed(j) for j in r_done)
    # the document held is Job.dumps() of the job it stands for, byte for byte
    assert [j.dumps() for j in r_done] == [j.dumps() for j in m_done]  # type: ignore[union-attr]
    for r, m in zip(r_done, m_done, strict=True):
        assert r is not None and m is not None
        assert (r.id, r.type, r.status, r.version) == (m.id, m.type, m.status, m.version)
        assert r.event_fields() == m.event_fields()  # what its events show, read raw
        assert is_unparsed(r)  # neither the header nor the event fields parsed it
        assert r == m and m == r  # equality parses, and works both ways
        assert not is_unparsed(r)
        assert r.dumps() == m.dumps()


async def test_a_lazy_job_behaves_as_a_plain_one(pair):
    broker, _ = pair
    [job] = await enqueued_lazily(broker, [make(payload=AWKWARD)])
    plain = Job.loads(job.dumps())
    assert isinstance(job, Job) and dataclasses.is_dataclass(job)

    twin = copy.copy(job)
    assert type(twin) is Job and twin == plain
    assert job.copy() == plain and type(job.copy()) is Job
    assert pickle.loads(pickle.dumps(job)) == plain
    assert dataclasses.replace(job, priority=1).priority == 1
    assert dataclasses.asdict(job) == dataclasses.asdict(plain)
    assert repr(job) == "Lazy" + repr(plain)  # the same fields, under its own name

    # an assignment to a header field parses first: the document is never stale
    [job] = await enqueued_lazily(broker, [make(payload=AWKWARD)])
    job.status = JobStatus.FAILED
    assert not is_unparsed(job)
    assert '"status":"failed"' in job.dumps() and job.payload == AWKWARD

    # a nested change needs a field read, which parses
    [job] = await enqueued_lazily(broker, [make()])
    job.payload["added"] = 1
    assert job.dumps() == dataclasses.replace(job).dumps()
    assert '"added":1' in job.dumps()


async def test_store_writes_lazy_and_plain_jobs_alike(pair):
    broker, store = pair
    stored = await enqueued_lazily(broker, awkward_jobs())
    plain = [Job.loads(j.dumps()) for j in stored]
    await store.put_many(stored)
    assert all(is_unparsed(j) for j in stored)  # written without parsing
    for job in plain:
        got = await store.get(job.id)
        assert got is not None and got.dumps() == job.dumps()
    page = await store.query(JobQuery(limit=50))
    assert sorted(j.dumps() for j in page.jobs) == sorted(j.dumps() for j in plain)
    for job in plain:
        [found] = (await store.query(JobQuery(type=job.type, limit=50))).jobs
        assert found.id == job.id


async def test_store_batch_repeating_a_job_keeps_its_indexes_right(pair):
    _, store = pair
    job = make("a")
    later = Job.loads(job.dumps())
    later.status, later.type, later.version = JobStatus.COMPLETED, "b", job.version + 1
    latest = Job.loads(later.dumps())
    latest.status, latest.version = JobStatus.FAILED, later.version + 1
    other = make("a")
    await store.put_many([job, other, later, latest])
    assert (await store.get(job.id)).dumps() == latest.dumps()  # type: ignore[union-attr]
    by_status = {
        s: [j.id for j in (await store.query(JobQuery(statuses=frozenset({s})))).jobs]
        for s in (JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED)
    }
    assert by_status == {
        JobStatus.PENDING: [other.id],
        JobStatus.COMPLETED: [],
        JobStatus.FAILED: [job.id],
    }
    assert [j.id for j in (await store.query(JobQuery(type="a"))).jobs] == [other.id]
    assert [j.id for j in (await store.query(JobQuery(type="b"))).jobs] == [job.id]
    counts = await store.count_by_status()
    assert counts["pending"] == 1 and counts["failed"] == 1 and counts["completed"] == 0


# --------------------------------------------------------------------------- trio's own wire


async def run_scenario(url: str) -> list[str]:
    """Enqueue, claim, finish and store a few jobs; the documents that came back."""
    prefix = "w" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(url, prefix=prefix, records=True)
    store = await RedisStore.open(url, prefix=prefix, connection=broker.connection)
    try:
        jobs = [make("w", payload={"i": i}) for i in range(5)]
        for i, job in enumerate(jobs):
            job.id = f"{i:026d}"
        out = [j.dumps() for j in await broker.enqueue(jobs, NOW)]
        leases = await broker.claim("n1", 3, 30.0, NOW + 1)
        for lease in leases:
            lease.token = "t"  # the same token text on both paths
        done = await broker.finish([Finish(x.job.id, "t", "completed") for x in leases], NOW + 2)
        out += [j.dumps() if j is not None else "refused" for j in done]
        await store.put_many([j for j in done if j is not None])
        out += [j.dumps() for j in (await store.query(JobQuery(limit=10))).jobs]
        out.append(json.dumps(await broker.depths(), sort_keys=True))
        return out
    finally:
        await broker.close()


async def test_native_and_threaded_scripts_answer_alike(redis_server, monkeypatch):
    native = await run_scenario(redis_server.url)
    monkeypatch.setattr(wire, "NATIVE_SCRIPTS", False)
    threaded = await run_scenario(redis_server.url)
    assert native == threaded


async def test_a_flushed_script_cache_is_reloaded_once(pair, redis_server):
    broker, _ = pair
    await broker.enqueue([make()], NOW)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.script_flush()
    finally:
        raw.close()
    [lease] = await broker.claim("n1", 5, 30.0, NOW)
    assert lease.job.status == JobStatus.RUNNING


async def test_a_cancelled_caller_leaves_the_wire_in_step(pair, redis_server):
    """The call is shielded: sent, it runs whole and its reply is read off the wire."""
    broker, _ = pair
    await broker.enqueue([make() for _ in range(3)], NOW)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.client_pause(300, all=False)  # the claim waits for its reply a while
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(broker.claim, "n1", 1, 30.0, NOW)
                await trio.sleep(0.1)
                scope.cancel()  # while the claim is on the wire
        assert (await broker.depths())["running"] == 1  # it ran, whole
        leases = await broker.claim("n1", 5, 30.0, NOW)  # and the next reply is its own
        assert len(leases) == 2
    finally:
        raw.client_unpause()
        raw.close()


async def test_a_slow_reply_times_out_and_the_wire_is_replaced(redis_server):
    prefix = "t" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix, socket_timeout=0.3)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        await broker.enqueue([make()], NOW)
        raw.client_pause(1000, all=False)  # writes wait a second
        with pytest.raises(BackendUnavailable):
            await broker.claim("n1", 1, 30.0, NOW)
        await trio.sleep(1.0)
        # a new connection: the old one's late reply can never be read as this one's
        leases = await broker.claim("n1", 5, 30.0, NOW)
        assert len(leases) <= 1  # the timed-out claim may have run after the pause
        assert (await broker.depths())["running"] == 1
    finally:
        raw.client_unpause()
        raw.close()
        await broker.close()


async def test_scripts_reach_the_database_of_the_url(redis_server):
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    prefix = "d" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(url, prefix=prefix)
    raw = redis.Redis.from_url(url)
    try:
        [job] = await broker.enqueue([make()], NOW)
        assert raw.exists("{" + prefix + "}:job:" + job.id)
    finally:
        raw.close()
        await broker.close()


async def test_a_connection_cut_under_a_call_is_backend_unavailable():
    """A peer that hangs up mid-reply (a crashing server) is an outage, not a crash."""

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(1 << 16)
        await stream.send_all(b"$100\r\nonly part of it")
        await trio.sleep(0.05)
        # a reset, not a clean close: the client's read fails with ECONNRESET
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        listener = listeners[0]
        port = listener.socket.getsockname()[1]
        broker = await RedisBroker.open(f"redis://127.0.0.1:{port}/0", prefix="cut")
        try:
            with pytest.raises(BackendUnavailable):
                await broker.claim("n1", 1, 30.0, NOW)
            with pytest.raises(BackendUnavailable):  # and again, on a new connection
                await broker.finish([Finish("x", "t", "completed")], NOW)
        finally:
            await broker.close()
            nursery.cancel_scope.cancel()


def test_claim_parse_equals_the_document_parse():
    """``_job`` reads the claim reply's fragments as ``Job.loads`` reads the document; so
    does ``decode_many``, a job alone (orjson unless 19 digits in a row) and all together
    (one text: json.loads reads all when one job needs it)."""
    import random

    from jobtrio.jobs import Attempt

    rng = random.Random(7)
    replies: list[tuple[bytes, bytes, Job]] = []
    values = [None, 0, -3, 2**70, 1.5, -0.0, 1e-7, 1e300, "", 'q"u\\o', "ž🐢"]
    values += [True, False, [1, {"a": None}], {"k": [1.25]}]
    for i in range(300):
        job = make(rng.choice(["t", 'x"y', "ü"]), payload={"v": rng.choice(values)})
        job.status = rng.choice(list(JobStatus))
        for name in ("scheduled_at", "started_at", "completed_at"):
            setattr(job, name, rng.choice([None, NOW + rng.random(), 17, 1e9]))
        job.result = rng.choice(values)
        job.error = rng.choice([None, "boom", 'q"\\x'])
        job.node_id = rng.choice([None, "n1", 'n"2'])
        job.worker_id = rng.choice([None, "n1/w0"])
        job.retry_count, job.lease_expirations, job.version = i % 3, i % 2, i
        job.attempts = [
            Attempt(n + 1, "n1", rng.choice([None, "w"]), NOW + n, NOW + n + 1, "failed", "e")
            for n in range(i % 3)
        ]
        if i % 2:
            job.attempts.append(Attempt(len(job.attempts) + 1, 'n"1', None, NOW + 9))
        body, fields = codec.encode(job, job.status)
        doc = codec.doc(body, fields)
        slow = Job.loads(doc)
        # the claim's reader (decode_many) reads with orjson unless 19 digits in a row
        [many] = codec.decode_many([body.encode()], [codec.SEP.join(fields).encode()])
        for fast in (codec.RawJob(body, fields).job(), many):
            assert fast.dumps() == slow.dumps()
            assert fast == slow
            assert [type(getattr(fast, n)) for n in JOB_FIELDS] == [
                type(getattr(slow, n)) for n in JOB_FIELDS
            ]
        replies.append((body.encode(), codec.SEP.join(fields).encode(), slow))
    # all, and those orjson reads (the batch then goes to orjson, NaN and 1e400 apart)
    for batch in (replies, [r for r in replies if orjson_exact(r[0] + r[1])]):
        together = codec.decode_many([r[0] for r in batch], [r[1] for r in batch])
        assert [job.dumps() for job in together] == [r[2].dumps() for r in batch]
        assert together == [r[2] for r in batch]


async def test_claimed_jobs_read_with_orjson_are_the_jobs_json_reads(pair):
    """A claim reply is read by orjson unless a 19-digit run could be an integer past 64
    bits (orjson's float, json's exact int); what orjson refuses (NaN, a lone surrogate
    escape, 1e400) is read by json.loads. Claimed on Redis and on the memory Broker, the
    jobs are the same, field by field and type by type."""
    broker, _ = pair
    memory = MemoryBroker()
    specials: list[dict] = [
        {"n": 2**63 - 1, "m": -(2**63), "u": 2**64 - 1},  # 19-20 digits: json's way
        {"big": 2**64 + 1},
        {"nan": math.nan, "inf": math.inf},
        {"lone": "\ud800 alone", "x": 1e-320},
        {"t": 1700000000.123456, "f": [0.1, 1e300, -0.0, 123456789012345678]},
        AWKWARD,
    ]
    jobs = []
    for i, payload in enumerate(specials * 2):
        job = make(f"t{i}")
        job.payload = payload  # past validation, which refuses NaN: the Broker carries it
        jobs.append(job)
    for b in (broker, memory):
        await b.enqueue([j.copy() for j in jobs], NOW)
    got: dict[Any, dict[str, Job]] = {broker: {}, memory: {}}
    for b in (broker, memory):
        for batch in (1, 1, 1, 1, 1, 1, 50):  # replies of one job each (so each one's
            # reader is chosen on that job alone), then the rest in one reply
            got[b].update(
                (lease.job.id, lease.job) for lease in await b.claim("n1", batch, 30.0, NOW + 1)
            )
    assert got[broker].keys() == got[memory].keys() == {j.id for j in jobs}
    for job_id, r in got[broker].items():
        m = got[memory][job_id]
        assert r.dumps() == m.dumps()
        for name in JOB_FIELDS:
            if name != "payload":
                assert getattr(r, name) == getattr(m, name), name
        assert json.dumps(r.payload) == json.dumps(m.payload)  # NaN != NaN: compare text
        assert json_types(r.payload) == json_types(m.payload)


def json_types(value: Any) -> Any:
    """``value`` with each leaf replaced by its type's name (an int read as a float shows)."""
    if isinstance(value, dict):
        return {k: json_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_types(v) for v in value]
    return type(value).__name__


def test_hand_written_body_equals_the_encoded_dict():
    import random

    encode = json.JSONEncoder(separators=(",", ":")).encode
    rng = random.Random(3)
    for i in range(500):
        job = make(
            rng.choice(["t", 'q"\\', "ž🐢\u2028", "a\x1fb"]),
            payload=rng.choice([{}, {"a": [1, 2.5, None]}, {"ž": "🐢"}, {"created_at": 1}]),
            priority=rng.randint(1, 10),
            timeout=rng.choice([None, 0.1 + 0.2, 5]),
            idempotency_key=rng.choice([None, 'k"ž' + str(i)]),
        )
        job.owner = rng.choice([None, "uma", 'o"ž\\'])
        if i % 3 == 0:
            job.created_at = 17  # an int from elsewhere stays an int
        reference = encode(
            {
                "id": job.id,
                "type": job.type,
                "priority": job.priority,
                "payload": job.payload,
                "created_at": job.created_at,
                "max_retries": job.max_retries,
                "timeout": job.timeout,
                "idempotency_key": job.idempotency_key,
                "depends_on": job.depends_on,
                "on_dependency_failure": job.on_dependency_failure,
                "workflow_id": job.workflow_id,
                "workflow": job.workflow,
                "owner": job.owner,
                "queue": job.queue,
            }
        )[1:-1]
        assert codec.encode(job, job.status)[0] == reference


def test_encoded_values_equal_each_fields_json_text():
    """``encode`` writes its usual values inline (None, ints, empty lists, remembered float
    texts): every value of ``m`` is still the compact JSON of its field, whatever it holds,
    and a float's remembered text is its own (0.0 and -0.0 are equal keys, not one text)."""
    import random

    reference = json.JSONEncoder(separators=(",", ":")).encode
    rng = random.Random(5)
    odd = [None, 0, -0.0, 0.0, 1.5, -1.5, 2**70 + 1, True, False, [], [1], {}, {"a": 1}, "ž\x00"]
    odd += [1e16, 1e-7, 17, 0.1 + 0.2, math.inf, -math.inf, NOW, -NOW]
    plain = [v.field for v in codec.LAYOUT.values if v.kind == "plain"]
    for _ in range(400):
        job = make(payload=rng.choice([{}, {"a": [1, 2.5, None]}, {"ž": "🐢"}]))
        for name in plain:
            setattr(job, name, rng.choice(odd))
        job.created_at = rng.choice([NOW, -0.0, 0.0, 3, 2.5, math.inf])
        body, values = codec.encode(job, job.status)
        for value, text in zip(codec.LAYOUT.values, values, strict=True):
            if value.kind == "plain":
                assert text == reference(getattr(job, value.field)), value.field
        created = body[body.rindex(',"created_at":') + 14 : body.index(',"max_retries":')]
        assert created == reference(job.created_at)
        assert codec.num(job.created_at) == json.dumps(job.created_at)


def test_remembered_float_texts_keep_zero_signs_apart():
    for first, second in ((0.0, -0.0), (-0.0, 0.0)):
        assert (codec.float_text(first), codec.float_text(second)) == (repr(first), repr(second))
        assert (codec.enc(first), codec.enc(second)) == (repr(first), repr(second))
    assert codec.float_text(NOW) == codec.float_text(NOW + 0.0) == repr(NOW)


def test_has_dependents_reads_an_unparsed_lazy_job_without_parsing_it():
    """Every finished job is asked (actors/releases.py): the answer comes from the raw value."""
    parent = make()
    parent.dependents = ["01J9Z6N5G4X8W3QH2K7R1M0P9T"]
    for job, expected in ((make(), False), (parent, True)):
        lazy = codec.lazy_job(*codec.encode(job, job.status))
        assert lazy.has_dependents() is expected
        assert is_unparsed(lazy)
        lazy.parse()
        assert lazy.has_dependents() is expected


def test_event_fields_read_an_unparsed_lazy_job_without_parsing_it():
    """Every finished job is published (dispatcher): its event fields come from the raw values,
    equal to the parsed job's, whatever the payload and workflow spell."""
    spelling = {"x": ',"max_retries":7,"owner":"mallory","queue":"q"', "owner": "eve"}
    running = make("t", payload=spelling, max_retries=12, priority=1)
    running.owner = 'alice "the" \\ ünïcode'
    running.workflow = {"owner": "w", "max_retries": 1}
    running.retry_count, running.worker_id, running.error = 2, "n1/w3", 'boom \x00 ,"owner":'
    running.attempts = [
        Attempt(1, "n1", "n1/w1", NOW, NOW + 1, "failed", "x"),
        Attempt(2, "n1", "n1/w3", NOW + 2, None, None, None),
    ]
    ended = make(payload=AWKWARD, max_retries=0)
    ended.attempts = [Attempt(1, "n2", None, NOW, NOW + 1, "completed", None)]
    for job in awkward_jobs() + [running, ended]:
        lazy = codec.lazy_job(*codec.encode(job, job.status))
        assert lazy.event_fields() == job.event_fields()
        assert is_unparsed(lazy)
        lazy.parse()
        assert lazy.event_fields() == job.event_fields()


def test_the_dependency_fields_in_the_body_survive_a_payload_that_spells_them():
    """depends_on, on_dependency_failure, workflow_id and workflow sit in the body after the
    payload: a payload holding their names must fool neither the codec nor the scripts'
    lookup of the last ',"name":' (tests/test_backend_contract_flows.py runs the scripts)."""
    ids = ["01J9Z6N5G4X8W3QH2K7R1M0P9T", "01J9Z6N5G4X8W3QH2K7R1M0P9V"]
    job = make(
        payload={"x": ',"depends_on":["FAKE"],"on_dependency_failure":"run"', "created_at": 1},
        depends_on=ids,
        receive_results=True,
    )
    job.workflow_id = ids[0]
    job.workflow = {"kind": "chord", "members": ids}
    body, values = codec.encode(job, job.status)
    lazy = codec.lazy_job(body, values)
    assert lazy.dumps() == job.dumps()  # the byte-for-byte cut, unparsed
    lazy.parse()
    assert lazy.depends_on == ids and lazy.on_dependency_failure == "fail"
    assert lazy.workflow == job.workflow and lazy.payload == job.payload


async def test_leases_and_tokens_stay_out_of_the_listpack_encoding(pair, redis_server):
    """A node holds about 110 leases, under the 128 members up to which Redis keeps a
    sorted set or hash as a listpack (a walk of the list for every insert, parsing each
    float score): the claim keeps one long member in both, invisible to every move."""
    broker, _ = pair
    raw = redis.Redis(port=redis_server.port)
    leases_key, tokens_key = broker._p + "leases", broker._p + "tokens"
    jobs = await broker.enqueue([make() for _ in range(3)], NOW)
    held = await broker.claim("n1", 2, 30, NOW)
    assert raw.object("encoding", leases_key) == b"skiplist"
    assert raw.object("encoding", tokens_key) == b"hashtable"
    assert {lease.job.id for lease in await broker.running()} == {h.job.id for h in held}
    assert await broker.renew([(h.job.id, h.token) for h in held], 30, NOW + 1) == []
    # the leases end (finished, expired): only the kept member is left, never reaped
    await broker.finish([Finish(held[0].job.id, held[0].token, "completed")], NOW + 2)
    [lost] = await broker.requeue_expired(NOW + 100, await broker.acquire_epoch("n1", NOW), 5)
    assert lost.id == held[1].job.id and lost.status == JobStatus.PENDING
    assert await broker.running() == []
    assert await broker.requeue_expired(NOW + 10**9, 1, 5) == []
    assert raw.zcard(leases_key) == raw.hlen(tokens_key) == 1
    again = await broker.claim("n1", 3, 30, NOW + 101)
    assert {lease.job.id for lease in again} == {jobs[2].id, lost.id}
    raw.close()


async def test_the_running_index_stays_out_of_the_listpack_encoding(pair, redis_server):
    """The running index holds about the jobs the nodes hold, under the 128 members up to
    which Redis keeps a sorted set as a listpack: an add to it converts it with a long
    member removed in the same flush, which no reader ever sees."""
    broker, store = pair
    raw = redis.Redis(port=redis_server.port)
    running_key = broker._p + "rec-st:running"
    jobs = await broker.enqueue([make() for _ in range(4)], NOW)
    held = await broker.claim("n1", 2, 30, NOW)
    assert raw.object("encoding", running_key) == b"skiplist"
    assert sorted(raw.zrange(running_key, 0, -1)) == sorted(h.job.id.encode() for h in held)
    assert (await store.count_by_status())["running"] == 2
    page = await store.query(JobQuery(statuses=frozenset({JobStatus.RUNNING})))
    assert {j.id for j in page.jobs} == {h.job.id for h in held}
    more = await broker.claim("n1", 2, 30, NOW + 1)
    assert raw.zcard(running_key) == 4
    for lease in [*held, *more]:
        await broker.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 2)
    assert raw.exists(running_key) == 0
    assert (await store.count_by_status())["completed"] == len(jobs)
    raw.close()


async def test_a_job_of_the_default_queue_is_filed_without_its_queue_field(pair, redis_server):
    """The job hash leaves out ``u`` for the default queue (as jobs enqueued before queues
    have it): every move reads an absent queue as the default one."""
    broker, store = pair
    raw = redis.Redis(port=redis_server.port)
    plain, named = await broker.enqueue([make(), make(queue="render")], NOW)
    assert raw.hget(broker._p + "job:" + plain.id, "u") is None
    assert raw.hget(broker._p + "job:" + named.id, "u") == b"render"
    assert (await broker.get(plain.id)).queue == "default"  # type: ignore[union-attr]
    [lease] = await broker.claim("n1", 5, 30, NOW, ClaimScope(queues=("default",)))
    assert lease.job.id == plain.id and lease.job.queue == "default"
    [done] = await broker.finish([Finish(plain.id, lease.token, "released")], NOW + 1)
    assert done is not None and done.status == JobStatus.PENDING
    again = await broker.claim("n1", 5, 30, NOW + 2, ClaimScope(queues=("default",)))
    assert [a.job.id for a in again] == [plain.id]
    # the same id enqueued again into a named queue carries it, and the other way round
    moved = Job.loads(plain.dumps())
    moved.queue, moved.status = "render", JobStatus.PENDING
    await broker.enqueue([moved], NOW + 3)
    assert raw.hget(broker._p + "job:" + plain.id, "u") == b"render"
    back = Job.loads(named.dumps())
    back.queue = "default"
    await broker.enqueue([back], NOW + 4)
    assert raw.hget(broker._p + "job:" + named.id, "u") is None
    ids_in = await broker.claim("n1", 5, 30, NOW + 5, ClaimScope(queues=("render",)))
    assert [a.job.id for a in ids_in] == [plain.id]
    [record] = (await store.query(JobQuery(queue="default"))).jobs
    assert record.id == named.id
    raw.close()


async def test_a_request_and_a_reply_larger_than_the_socket_buffers_go_whole(redis_server):
    """The wire writes to the kernel until its buffer is full, then waits for room; and
    reads a reply over as many receives as it takes (8 MiB each way here)."""
    prefix = "big" + uuid.uuid4().hex[:12]
    broker = await RedisBroker.open(redis_server.url, prefix=prefix)
    try:
        jobs = [make(payload={"blob": f"{i:04d}" + "x" * 8_000}) for i in range(1_000)]
        stored = await broker.enqueue(jobs, NOW)
        assert [j.id for j in stored] == [j.id for j in jobs]
        leases = await broker.claim("n1", 1_000, 30.0, NOW)
        assert sorted(lease.job.payload["blob"][:4] for lease in leases) == [
            f"{i:04d}" for i in range(1_000)
        ]
        assert all(len(lease.job.payload["blob"]) == 8_004 for lease in leases)
    finally:
        await broker.delete_keyspace()
        await broker.close()


async def test_pending_scores_are_exact_across_a_carry_of_their_digits(pair, redis_server):
    """A pending score, ``(10 - priority) * 2**42`` plus the sequence number, is written as
    text by the script (``score_text``: its hundreds, then its last two digits): exact
    where the sequence number carries into the hundreds and the millions, and for the top
    band's scores, the sequence number alone."""
    broker, _ = pair
    raw = redis.Redis(port=redis_server.port)
    band = 2**42
    start = 1_000_000 - (5 * band) % 1_000_000 - 4  # the fourth job's score ends in 000000
    raw.set(broker._p + "seq", start)
    jobs = [make() for _ in range(6)] + [make(priority=10), make(priority=1)]
    await broker.enqueue(jobs, NOW)
    key = broker._p + "pending:default\x1fnoop"
    scores = {m.decode(): int(s) for m, s in raw.zrange(key, 0, -1, withscores=True)}
    want = [(10 - j.priority) * band + start + 1 + i for i, j in enumerate(jobs)]
    assert [scores[j.id] for j in jobs] == want
    assert want[3] % 1_000_000 == 0 and want[6] < 1_000_000
    raw.close()
