"""The Broker's and the Store's scripts as Redis Functions (FCALL), on real redis-servers.

What must hold: the moves run as functions where Redis has them, each
library loaded once; a server that lost them (FUNCTION FLUSH, a restart)
gets them again from the next call, calls in flight included; a server or
a user that refuses Redis Functions gets the same moves through EVALSHA;
two versions of a script (two node versions in one cluster) each run their
own; and no call sees what the call before it left in the library's tables.
Each test runs a redis-server of its own: they flush and restrict it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio

from jobtrio.backends.base import (
    BackendUnavailable,
    ClaimScope,
    Finish,
    JobQuery,
    ProgressReport,
    RateLimit,
)
from jobtrio.backends.redis import RedisBroker, RedisStore, codec, scripts, wire
from jobtrio.jobs import IdGenerator, Job, make_progress
from jobtrio.submission import validate_submission
from tests.servers import RedisServer, own_server

NOW = 1_700_000_000.0
ids = IdGenerator()


server = pytest.fixture(own_server, name="server")


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()


def prefix() -> str:
    return "f" + uuid.uuid4().hex[:8]


def job(**fields: object) -> Job:
    return validate_submission({"type": "noop", **fields}, NOW, ids=ids)


def calls(raw: redis.Redis, command: str) -> int:
    return int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def libraries(raw: redis.Redis) -> dict[str, str]:
    """jobtrio's libraries on the server: name -> code."""
    found = {}
    for lib in raw.function_list(library="jobtrio_*", withcode=True):
        fields = dict(zip(lib[::2], lib[1::2], strict=True))
        found[fields[b"library_name"].decode()] = fields[b"library_code"].decode()
    return found


async def run_one_job(broker: RedisBroker) -> None:
    await broker.enqueue([job()], NOW)
    [lease] = await broker.claim("n1", 1, 30.0, NOW)
    [done] = await broker.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 1)
    assert done is not None and done.status == "completed"


@pytest.mark.parametrize("native", [True, False], ids=["wire", "thread"])
async def test_moves_run_as_functions_each_library_loaded_once(
    server: RedisServer, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(wire, "NATIVE_SCRIPTS", native)
    p = prefix()
    broker = await RedisBroker.open(server.url, prefix=p, records=True)
    other = await RedisBroker.open(server.url, prefix=p, records=True)  # another node
    try:
        await run_one_job(broker)
        await run_one_job(other)
    finally:
        await broker.close()
        await other.close()
    # and the first of the enqueue's and of the claim's: "Function not found" (the finish
    # is in the claim's library)
    assert calls(raw, "fcall") == 6 + 2
    assert calls(raw, "evalsha") == calls(raw, "eval") == 0
    # enqueue; claim and finish in one (scripts.GROUPS): loaded by the first node only
    assert len(libraries(raw)) == 2
    assert calls(raw, "function|load") == 2


async def test_the_functions_come_back_after_a_flush_with_calls_in_flight(
    server: RedisServer, raw: redis.Redis
) -> None:
    """100 callers at once, each a job enqueued and read back 3 times, while the
    server's functions and scripts are flushed twice: every call answers (a refused
    FCALL ran nothing, so it is loaded and sent again), nothing is filed twice."""
    broker = await RedisBroker.open(server.url, prefix=prefix(), records=True)
    try:
        await run_one_job(broker)  # the libraries loaded
        loads = calls(raw, "function|load")
        depth = sum((await broker.depths()).values())
        filed: list[str] = []

        async def caller(i: int) -> None:
            for round_ in range(3):
                one = job()
                await broker.enqueue([one], NOW)
                assert (await broker.get(one.id)) is not None
                filed.append(one.id)
                if i == 0 and round_ < 2:
                    raw.function_flush()  # the others' calls are queued or in flight
                    raw.script_flush()

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(caller, i)
        assert len(set(filed)) == 300
        assert sum((await broker.depths()).values()) - depth == 300
        assert calls(raw, "function|load") - loads >= 4  # enqueue and get, twice
        # A flush that lands between a reload and its FCALL (the test's connection runs
        # between the two) makes that one call run with EVALSHA, as a load refused for now
        # does; the connection itself stays on FCALL: the next calls use no EVALSHA.
        evalsha, fcalls = calls(raw, "evalsha"), calls(raw, "fcall")
        await run_one_job(broker)
        assert calls(raw, "evalsha") == evalsha
        assert calls(raw, "fcall") - fcalls >= 3  # enqueue, claim, finish (reloaded or not)

        server.restart()  # functions are kept with the data (AOF)
        try:
            await broker.get("x")  # the connection the restart cut may fail one call
        except BackendUnavailable:
            pass
        await run_one_job(broker)
        raw.function_flush()
        await run_one_job(broker)
    finally:
        await broker.close()


@pytest.mark.parametrize("refused", ["-fcall", "-function"])
@pytest.mark.parametrize("native", [True, False], ids=["wire", "thread"])
async def test_a_user_refused_functions_runs_the_moves_with_evalsha(
    server: RedisServer,
    raw: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    refused: str,
    native: bool,
) -> None:
    """As on a managed Redis that allows EVALSHA but not FCALL or FUNCTION LOAD (or on
    Redis < 7, which answers "unknown command"): the refused call ran nothing, so it
    runs with EVALSHA, and so does every later call of that connection."""
    monkeypatch.setattr(wire, "NATIVE_SCRIPTS", native)
    raw.acl_setuser(
        "limited",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", refused],
    )
    url = f"redis://limited:secret@127.0.0.1:{server.port}/0"
    p = prefix()
    broker = await RedisBroker.open(url, prefix=p, records=True)
    store = await RedisStore.open(url, prefix=p, connection=broker.connection)
    try:
        with caplog.at_level(logging.WARNING, logger="jobtrio.backends.redis"):
            await run_one_job(broker)
            await run_one_job(broker)
            assert (await store.query(JobQuery(limit=10))).jobs  # the Store's scripts too
        assert broker.connection.functions is False
        warned = [r for r in caplog.records if "refuses Redis Functions" in r.getMessage()]
        assert len(warned) == 1
        assert calls(raw, "evalsha") >= 6
        # -function: the first FCALL (not found) and the one sent with the refused load
        assert calls(raw, "fcall") <= 2
        assert libraries(raw) == {}
    finally:
        await broker.close()


async def test_two_versions_of_the_scripts_run_side_by_side(
    server: RedisServer, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two node versions on one Redis and one prefix: each calls its own libraries
    (named by a hash of their code), neither replaces the other's, and the jobs one
    files the other runs."""
    p = prefix()
    old = await RedisBroker.open(server.url, prefix=p, records=True)
    read = scripts.lua_file

    def changed(name: str) -> str:
        text = read(name)
        return text + "\n-- the next version\n" if name == "broker_common" else text

    monkeypatch.setattr(scripts, "lua_file", changed)
    new = await RedisBroker.open(server.url, prefix=p, records=True)
    try:
        jobs = [job() for _ in range(4)]
        await old.enqueue(jobs[:2], NOW)
        await new.enqueue(jobs[2:], NOW)
        leases = await new.claim("n2", 2, 30.0, NOW)
        leases += await old.claim("n1", 2, 30.0, NOW)
        assert {lease.job.id for lease in leases} == {j.id for j in jobs}
        done = await old.finish([Finish(le.job.id, le.token, "completed") for le in leases], NOW)
        assert all(d is not None and d.status == "completed" for d in done)
        code = libraries(raw)
        # enqueue and claim (whose library holds the finish) twice: the new claim's jobs
        # are finished by the old library, whose memo never saw them (MEMO: a miss)
        assert len(code) == 4
        assert sum("-- the next version" in text for text in code.values()) == 2
        await run_one_job(old)  # still its own, after the new ones were loaded
        assert len(libraries(raw)) == 4
    finally:
        await old.close()
        await new.close()


async def test_a_finish_takes_the_job_as_stored_not_as_its_claim_left_it(
    server: RedisServer, raw: redis.Redis
) -> None:
    """The claim's library remembers the jobs it leased for their finish (MEMO in
    broker_common.lua), which takes them from there only while their m is the text the
    claim wrote. A progress report (another library) writes m in between: its finish must
    end the job as stored, progress and version included, and a job nothing touched must
    end the same as without the memo (the EVALSHA node: a script's memo is new every
    call)."""
    p = prefix()
    memo = await RedisBroker.open(server.url, prefix=p, records=True)
    plain = await RedisBroker.open(server.url, prefix=p + "e", records=True)
    plain.connection.functions = False
    try:
        ended: list[dict[str, object]] = []
        for broker in (memo, plain):
            jobs = [job(), job()]
            await broker.enqueue(jobs, NOW)
            leases = await broker.claim("n1", 2, 30.0, NOW)
            assert [le.job.id for le in leases] == [j.id for j in jobs]
            report = make_progress(0.5, "half", NOW + 1)
            [moved] = await broker.progress(
                [ProgressReport(jobs[0].id, leases[0].token, report)], NOW + 1
            )
            assert moved is not None and moved.progress == report
            done = await broker.finish(
                [Finish(le.job.id, le.token, "completed", "w1", result=7) for le in leases],
                NOW + 2,
            )
            for d, j in zip(done, jobs, strict=True):
                assert d is not None and d.status == "completed" and d.result == 7
                stored = await broker.get(j.id)
                assert stored is not None and d.to_dict() == stored.to_dict()
            assert done[0] is not None and done[0].progress == report
            assert done[0].version == moved.version + 1
            ended += [d.to_dict() | {"id": "", "created_at": 0} for d in done if d]
        assert ended[:2] == ended[2:]
        # the memo node's: enqueue, claim (with the finish), progress, get; the other none
        assert len(libraries(raw)) == 4
    finally:
        await memo.close()
        await plain.close()


async def test_a_memo_dropped_when_full_loses_no_finish(server: RedisServer) -> None:
    """Leases that end other than by a finish leave their entries in the memo, which is
    dropped whole past MEMO_MAX (4096) entries: 4,100 leased at once, then finished, and
    again after a lease of the same job was taken anew (a second entry for one id)."""
    p = prefix()
    broker = await RedisBroker.open(server.url, prefix=p, records=True)
    try:
        jobs = [job() for _ in range(4100)]
        await broker.enqueue(jobs, NOW)
        leases = await broker.claim("n1", 4100, 30.0, NOW)
        assert len(leases) == 4100
        done = await broker.finish(
            [Finish(le.job.id, le.token, "completed") for le in leases], NOW + 1
        )
        assert all(d is not None and d.status == "completed" for d in done)
        assert (await broker.depths())["completed"] == 4100
        await broker.enqueue([again := job()], NOW)
        [first] = await broker.claim("n1", 1, 30.0, NOW)
        [released] = await broker.finish([Finish(again.id, first.token, "released")], NOW)
        assert released is not None and released.status == "pending"
        [second] = await broker.claim("n1", 1, 30.0, NOW + 1)
        [ended] = await broker.finish([Finish(again.id, second.token, "completed")], NOW + 2)
        stored = await broker.get(again.id)
        assert ended is not None and stored is not None
        assert ended.to_dict() == stored.to_dict() and len(ended.attempts) == 1
    finally:
        await broker.close()


async def test_a_claim_never_writes_back_a_rate_window_an_earlier_call_read(
    server: RedisServer,
) -> None:
    """A library keeps its tables between calls; the claim's rate windows (RATE) are
    one of them. A claim that finds no job of queue a must not write back a's window as
    an earlier claim saw it: claims through EVALSHA (another node) took from a
    meanwhile, and a's budget would be handed out again (13 jobs of a 10-job window;
    it was, when RATE was left filled at the end of a claim)."""
    p = prefix()
    node1 = await RedisBroker.open(server.url, prefix=p)
    node2 = await RedisBroker.open(server.url, prefix=p)
    node2.connection.functions = False  # EVALSHA: not this library's tables
    try:
        await node1.set_queue("a", rate_limit=RateLimit(jobs=10, per=1000.0))
        a, b = ClaimScope(queues=("a",)), ClaimScope(queues=("b",))
        await node1.enqueue([job(queue="a") for _ in range(2)], NOW)
        # each claim asks for more than a holds: it reads a's set to its end, which then
        # leaves the sets a claim reads (so the claim of b below reads no window of a)
        taken = len(await node1.claim("n1", 9, 30.0, NOW, a))  # a's window: 2
        await node1.enqueue([job(queue="a") for _ in range(3)], NOW)
        taken += len(await node2.claim("n2", 9, 30.0, NOW, a))  # a's window: 5
        await node1.enqueue([job(queue="b") for _ in range(5)], NOW)
        assert len(await node1.claim("n1", 5, 30.0, NOW, b)) == 5  # no job of a left
        await node1.enqueue([job(queue="a") for _ in range(20)], NOW)
        taken += len(await node1.claim("n1", 20, 30.0, NOW, a))
        assert taken == 10
    finally:
        await node1.close()
        await node2.close()


async def test_a_prefix_of_any_text_is_written_whole_into_its_libraries(
    server: RedisServer, raw: redis.Redis
) -> None:
    """A library holds its key prefix as a Lua literal (``scripts.lua_literal``), not
    read from the call's keys: a quote, a backslash, a control character before a digit
    (a decimal escape of fewer than 3 digits would take the digit in), text outside
    ASCII must each come back as they were, or the moves would file the jobs under keys
    no other reader looks at, or the library would not load (EVALSHA then)."""
    odd = "q'1\\n\t9\"\x01" + "2ž🐢 " + prefix()
    broker = await RedisBroker.open(server.url, prefix=odd, records=True)
    try:
        await run_one_job(broker)
        assert broker.connection.functions is True
    finally:
        await broker.close()
    assert calls(raw, "evalsha") == calls(raw, "eval") == 0
    assert len(libraries(raw)) == 2
    keys = [key.decode() for key in raw.keys("*")]
    assert keys and all(key.startswith("{" + odd + "}:") for key in keys)


async def test_a_call_that_failed_half_way_leaves_nothing_to_the_next(
    server: RedisServer, raw: redis.Redis
) -> None:
    """An enqueue whose second job's header is malformed fails after it filed the
    first (Redis keeps a failed script's writes), with the first job's pending
    placement and count still queued in the library's tables. The next call must not
    apply them: as under EVALSHA, the next enqueue files its own job alone."""
    p = prefix()
    broker = await RedisBroker.open(server.url, prefix=p)
    try:
        await run_one_job(broker)  # the libraries loaded
        first = job()
        body, values = codec.encode(first, first.status)
        enqueue = scripts.broker_library("enqueue", False, codec.hash_tag(p))
        function = enqueue.split("\n", 1)[0].split("name=", 1)[1]
        with pytest.raises(redis.ResponseError):
            raw.fcall(
                function, 1, codec.hash_tag(p), codec.num(NOW),
                *codec.enqueue_arg(first, body, values), "malformed", "", "",
            )  # fmt: skip
        second = job()
        await broker.enqueue([second], NOW)
        leases = await broker.claim("n1", 10, 30.0, NOW)
        assert [lease.job.id for lease in leases] == [second.id]
        assert (await broker.depths())["running"] == 1
    finally:
        await broker.close()


@pytest.mark.parametrize("native", [True, False], ids=["wire", "thread"])
async def test_a_redis_without_functions_runs_the_moves_with_evalsha(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    """Redis < 7 has no FCALL nor FUNCTION: it answers "unknown command" (here a Redis
    7 with both renamed away). That refusal ran nothing: the call runs with EVALSHA, and
    so does every later call of that connection, logged once."""
    monkeypatch.setattr(wire, "NATIVE_SCRIPTS", native)
    gone = ("FCALL", "FCALL_RO", "FUNCTION")
    old = RedisServer(tmp_path, extra=[arg for c in gone for arg in ("--rename-command", c, "")])
    old.start()
    raw = redis.Redis.from_url(old.url)
    try:
        with pytest.raises(redis.ResponseError, match="unknown command"):
            raw.execute_command("FCALL", "f", 0)
        broker = await RedisBroker.open(old.url, prefix=prefix(), records=True)
        try:
            with caplog.at_level(logging.WARNING, logger="jobtrio.backends.redis"):
                await run_one_job(broker)
                await run_one_job(broker)
            assert broker.connection.functions is False
        finally:
            await broker.close()
        warned = [r for r in caplog.records if "refuses Redis Functions" in r.getMessage()]
        assert len(warned) == 1
        assert calls(raw, "evalsha") >= 6
    finally:
        raw.close()
        old.stop()
