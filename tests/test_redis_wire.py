"""The scripts' wire: concurrent calls pipelined on one connection, on a real redis-server.

Each test starts its calls together, so that they are in flight on the shared
connection at once, and checks what a caller must never see: another call's
reply, a call abandoned on cancellation, a connection reused after it failed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import trio

from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.redis import wire
from jobtrio.backends.redis.wire import RedisConnection

#: Each call writes its own value under its own key and answers with what it read back.
ECHO = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"


@pytest.fixture
def raw(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.client_unpause()
        client.close()


@pytest.fixture
async def conn(redis_server) -> AsyncIterator[RedisConnection]:
    connection = RedisConnection.from_url(redis_server.url, socket_timeout=5.0)
    try:
        yield connection
    finally:
        await connection.close()


def unique() -> str:
    return "wire" + uuid.uuid4().hex[:12]


def connections(raw: redis.Redis) -> set[str]:
    """The ids of the server's clients, the raw client's own included. The server is the
    session's, shared with other tests' clients, which may come and go meanwhile: compare
    the ids that appear, not how many there are."""
    return {client["id"] for client in raw.client_list()}


def reads_processed(raw: redis.Redis) -> int:
    """Reads Redis made from its clients' sockets (INFO stats), one per request it was sent
    alone."""
    return int(raw.info("stats")["total_reads_processed"])


async def wait_until(condition: Any, what: str, seconds: float = 10.0) -> None:
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.005)
    assert condition(), what


def in_flight(conn: RedisConnection) -> int:
    shared = conn._shared
    return 0 if shared is None else len(shared.calls)


async def test_concurrent_callers_share_one_connection_and_get_their_own_replies(conn, raw):
    """200 callers at once, 5 calls each, every reply the caller's own; and through it
    all the scripts' cache flushed twice, so NOSCRIPT refusals come back between the
    other calls' replies (each refused call loads the script and runs again)."""
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])  # the connection opened, the script loaded
    before_connections = connections(raw)
    before_reads = reads_processed(raw)
    before_loads = raw.info("commandstats").get("cmdstat_script|load", {}).get("calls", 0)
    got: dict[tuple[int, int], Any] = {}

    async def caller(i: int) -> None:
        for round_ in range(5):
            value = f"{i}:{round_}:{uuid.uuid4().hex}"
            got[i, round_] = (value, await conn.script(script, [f"{prefix}:{i}"], [value]))
            if i == 0 and round_ in (1, 3):
                raw.script_flush()  # the others' calls are queued or in flight meanwhile

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(caller, i)
    assert len(got) == 1000
    assert all(reply == value.encode() for value, reply in got.values())
    loads = raw.info("commandstats").get("cmdstat_script|load", {}).get("calls", 0)
    assert loads - before_loads >= 2  # NOSCRIPT came back, and was answered by a load
    assert not connections(raw) - before_connections  # all over the one connection
    # pipelined: Redis read the 1,000 requests in far fewer reads than one each
    assert reads_processed(raw) - before_reads < 500


async def test_a_connection_cut_mid_flight_fails_every_call_on_it(conn, raw):
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    raw.client_pause(10_000, all=False)  # writes wait: the calls stay in flight
    outcomes: list[Any] = []

    async def caller(i: int) -> None:
        try:
            outcomes.append(await conn.script(script, [f"{prefix}:{i}"], [str(i)]))
        except BackendUnavailable as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(caller, i)
        await wait_until(lambda: in_flight(conn) == 20, "20 calls in flight")
        assert conn._shared is not None
        host, port = conn._shared.sock.getsockname()[:2]
        raw.client_kill(f"{host}:{port}")
    assert len(outcomes) == 20
    assert all(isinstance(o, BackendUnavailable) for o in outcomes), outcomes
    # failed by the close itself, not by the deadline 5 s on (a wire reading an EOF as
    # "no data yet" spun until then)
    assert any("closed the connection" in str(o) for o in outcomes), outcomes
    # and the calls that waited behind the one reading are told the cause too
    assert all("closed the connection" in str(o) for o in outcomes), outcomes
    raw.client_unpause()
    assert await conn.script(script, [prefix], ["after"]) == b"after"  # a new connection


async def every_other_cancelled_on_the_wire(
    conn: Any, raw: Any, call: Callable[[int], Awaitable[Any]]
) -> dict[int, Any]:
    """30 calls ``call(i)`` sent while the server is paused, the even ones' callers
    cancelled once all 30 are in flight (their requests on the wire), then the server
    resumed: the replies the callers got, by ``i`` (the cancelled ones may have none)."""
    raw.client_pause(10_000, all=False)
    kept: dict[int, Any] = {}
    async with trio.open_nursery() as nursery:
        scopes = []
        for i in range(30):
            scope = trio.CancelScope()
            scopes.append(scope)

            async def run(i: int = i, scope: trio.CancelScope = scope) -> None:
                with scope:
                    kept[i] = await call(i)

            nursery.start_soon(run)
        await wait_until(lambda: in_flight(conn) == 30, "30 calls in flight")
        for scope in scopes[::2]:
            scope.cancel()
        raw.client_unpause()
    return kept


async def test_a_cancelled_caller_neither_abandons_its_call_nor_shifts_the_replies(conn, raw):
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    # every other caller cancelled while its call is on the wire
    kept = await every_other_cancelled_on_the_wire(
        conn, raw, lambda i: conn.script(script, [f"{prefix}:{i}"], [f"v{i}"])
    )
    # the cancelled callers' calls ran whole (their replies read off the wire, not lost)
    assert {i for i in range(30) if raw.get(f"{prefix}:{i}") == f"v{i}".encode()} == set(range(30))
    # and every caller that took its reply got its own
    assert kept and all(kept[i] == f"v{i}".encode() for i in kept)
    assert set(kept) >= set(range(1, 30, 2))
    assert await conn.script(script, [prefix], ["next"]) == b"next"


async def test_a_server_that_does_not_answer_fails_every_call_in_flight(redis_server, raw):
    conn = RedisConnection.from_url(redis_server.url, socket_timeout=0.3)
    try:
        script = conn.client.register_script(ECHO)
        prefix = unique()
        await conn.script(script, [prefix], ["warm"])
        first = conn._shared
        raw.client_pause(60_000, all=False)
        outcomes: list[Any] = []

        async def caller(i: int) -> None:
            try:
                outcomes.append(await conn.script(script, [f"{prefix}:{i}"], [str(i)]))
            except BackendUnavailable as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(caller, i)
        assert len(outcomes) == 10
        assert all(isinstance(o, BackendUnavailable) for o in outcomes), outcomes
        assert first is not None and first.lost is not None and first.sock.fileno() == -1
        raw.client_unpause()
        # a new connection: the old one's late replies can never be read as these
        assert await conn.script(script, [prefix], ["after"]) == b"after"
        assert conn._shared is not first
    finally:
        await conn.close()


async def test_calls_past_the_pipeline_depth_wait_their_turn(redis_server, raw):
    conn = RedisConnection.from_url(redis_server.url, pipeline_depth=3)
    try:
        script = conn.client.register_script(ECHO)
        prefix = unique()
        await conn.script(script, [prefix], ["warm"])
        raw.client_pause(10_000, all=False)
        got: dict[int, Any] = {}

        async def caller(i: int) -> None:
            got[i] = await conn.script(script, [f"{prefix}:{i}"], [f"v{i}"])

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(caller, i)
            await wait_until(lambda: in_flight(conn) == 3, "3 calls in flight")
            await trio.testing.wait_all_tasks_blocked()
            assert in_flight(conn) == 3  # the other 9 wait for room, sending nothing
            raw.client_unpause()
        assert got == {i: f"v{i}".encode() for i in range(12)}
    finally:
        await conn.close()


async def test_an_idle_connection_past_the_health_check_interval_is_not_trusted(
    conn, raw, monkeypatch
):
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    assert conn._shared is not None
    host, port = conn._shared.sock.getsockname()[:2]
    raw.client_kill(f"{host}:{port}")  # cut silently, as a failover or a NAT would
    monkeypatch.setattr(wire, "HEALTH_CHECK_INTERVAL", 0.0)
    assert await conn.script(script, [prefix], ["again"]) == b"again"  # on a new one


async def test_the_wire_authenticates_and_selects_its_database(redis_server, raw):
    user, password = unique(), uuid.uuid4().hex
    raw.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys="*", commands=["+@all"])
    base = redis_server.url.rsplit("/", 1)[0].replace("redis://", f"redis://{user}:{password}@")
    conn = RedisConnection.from_url(base + "/4")
    wrong = RedisConnection.from_url(base.replace(password, "wrong") + "/4")
    try:
        script = conn.client.register_script(ECHO)
        key = unique()
        async with trio.open_nursery() as nursery:  # concurrent first calls: one connect
            for i in range(5):
                nursery.start_soon(conn.script, script, [f"{key}:{i}"], [str(i)])
        db4 = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/4")
        assert [db4.get(f"{key}:{i}") for i in range(5)] == [str(i).encode() for i in range(5)]
        assert raw.get(f"{key}:0") is None  # not in database 0
        db4.close()
        with pytest.raises(BackendUnavailable, match="(?i)password|auth"):
            await wrong.script(script, [key], ["x"])
    finally:
        raw.acl_deluser(user)
        await conn.close()
        await wrong.close()


async def test_a_close_under_a_call_about_to_send_fails_it_as_unavailable(redis_server):
    """The connection closed (the node stopping) while a call on the idle wire yields
    before its send: that call fails with BackendUnavailable, never another error (it
    waited for the closed socket to become readable: ValueError). Whether the close comes
    in that yield or before the call is trio's order of the round's tasks, so 20 tries."""
    outcomes: list[str] = []
    for _ in range(20):
        connection = RedisConnection.from_url(redis_server.url, socket_timeout=5.0)
        script = connection.client.register_script(ECHO)
        key = unique()
        await connection.script(script, [key], ["warm"])  # the wire open and idle

        async def call(
            connection: RedisConnection = connection, script: Any = script, key: str = key
        ) -> None:
            try:
                await connection.script(script, [key], ["v"])
            except BackendUnavailable:
                outcomes.append("unavailable")
            else:
                outcomes.append("answered")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            nursery.start_soon(connection.close)
        await connection.close()
    assert len(outcomes) == 20
    assert "unavailable" in outcomes  # the close came inside the yield at least once


def test_a_protocol_error_is_an_outage() -> None:
    """A reply the parser cannot read leaves the connection unusable: the caller holding
    the wire gets BackendUnavailable, as the other calls on it do (it got InvalidResponse)."""
    error = wire.translated_error(redis.exceptions.InvalidResponse("Protocol error, got 'x'"))
    assert isinstance(error, BackendUnavailable)


async def test_a_call_with_an_earlier_deadline_bounds_the_holder_it_queues_behind(conn, raw):
    """The holder of the I/O runs under the earliest deadline of the calls in flight: a call
    queued behind it with an earlier deadline than the holder's own (a NOSCRIPT reload
    keeps its first send's deadline) gives the wire up at that deadline, not the holder's.
    Here the holder waits on a BLPOP that nothing will answer (deadline 5 s on trio's
    clock) and a PING queues behind it with 0.3 s: the wire fails at the PING's deadline
    (without the tightening, both waited for the holder's 5 s)."""
    script = conn.client.register_script(ECHO)
    await conn.script(script, [unique()], ["warm"])  # the wire open and idle
    shared = conn._shared
    assert shared is not None
    start = trio.current_time()
    holder_deadline = start + 5.0
    failed_at: list[tuple[str, float]] = []

    async def call(name: str, payload: bytes, deadline: float) -> None:
        try:
            await shared.request(payload, deadline)
        except redis.RedisError:
            failed_at.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            call, "blpop", wire._command(b"BLPOP", unique().encode(), b"0"), holder_deadline
        )
        await wait_until(lambda: shared.scope is not None, "the BLPOP holding the I/O")
        nursery.start_soon(call, "ping", wire._command(b"PING"), start + 0.3)
    assert sorted(name for name, _ in failed_at) == ["blpop", "ping"]
    assert shared.lost is not None
    assert all(when < holder_deadline for _, when in failed_at), (start, failed_at)


async def test_the_next_holder_keeps_the_earliest_deadline_of_the_calls_in_flight(conn, raw):
    """A BLPOP on key 1 holds the I/O; a BLPOP on key 2 that nothing will answer (5 s)
    and a PING with 0.3 s queue behind it. Key 1 gets a value, and the I/O passes to the
    second BLPOP, whose hold keeps the earliest deadline of the calls left (the PING's),
    not its own: the wire is given up then, not at 5 s."""
    script = conn.client.register_script(ECHO)
    await conn.script(script, [unique()], ["warm"])  # the wire open and idle
    shared = conn._shared
    assert shared is not None
    start = trio.current_time()
    outcomes: dict[str, Any] = {}
    first, second = unique(), unique()

    async def call(name: str, payload: bytes, deadline: float) -> None:
        try:
            outcomes[name] = await shared.request(payload, deadline)
        except redis.RedisError as exc:
            outcomes[name] = (exc, trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "first", wire._command(b"BLPOP", first.encode(), b"0"), start + 5)
        await wait_until(lambda: in_flight(conn) == 1, "the first BLPOP in flight")
        nursery.start_soon(call, "blpop", wire._command(b"BLPOP", second.encode(), b"0"), start + 5)
        await wait_until(lambda: in_flight(conn) == 2, "the second BLPOP in flight")
        nursery.start_soon(call, "ping", wire._command(b"PING"), trio.current_time() + 0.3)
        await wait_until(lambda: in_flight(conn) == 3, "the PING in flight")
        raw.lpush(first, "x")
    assert outcomes["first"] == [[first.encode(), b"x"]], outcomes
    for name in ("blpop", "ping"):
        exc, when = outcomes[name]
        assert isinstance(exc, redis.ConnectionError), outcomes
        assert when < start + 5.0, (start, outcomes)
    assert shared.lost is not None


async def test_a_holder_past_its_own_deadline_times_out(conn, raw):
    """A BLPOP that nothing will answer, alone on the wire with 0.3 s: a timeout (the
    caller's BackendUnavailable then names it), not a lost connection."""
    script = conn.client.register_script(ECHO)
    await conn.script(script, [unique()], ["warm"])
    shared = conn._shared
    assert shared is not None
    deadline = trio.current_time() + 0.3
    try:
        await shared.request(wire._command(b"BLPOP", unique().encode(), b"0"), deadline)
    except redis.TimeoutError:
        pass
    else:
        raise AssertionError("the BLPOP was answered")
    assert shared.lost is not None


async def test_a_busy_connection_past_the_health_check_interval_is_kept(conn, raw, monkeypatch):
    """Trust is for an idle connection: one busy with a call (a BLPOP waiting for a value)
    past the interval is used by the next call, never replaced (replacing it would fail
    the call in flight on it)."""
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    shared = conn._shared
    assert shared is not None
    key = unique()
    popped: list[Any] = []

    async def blpop() -> None:
        deadline = trio.current_time() + 60.0
        [reply] = await shared.request(wire._command(b"BLPOP", key.encode(), b"0"), deadline)
        popped.append(reply)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blpop)
        await wait_until(lambda: in_flight(conn) == 1, "the BLPOP in flight")
        monkeypatch.setattr(wire, "HEALTH_CHECK_INTERVAL", 0.0)

        async def call() -> None:
            assert await conn.script(script, [prefix], ["busy"]) == b"busy"

        nursery.start_soon(call)
        await wait_until(lambda: in_flight(conn) == 2, "the script queued behind it")
        raw.lpush(key, "x")
    assert popped == [[key.encode(), b"x"]]
    assert conn._shared is shared and shared.lost is None


async def test_a_cancelled_caller_starts_no_call(conn, raw):
    script = conn.client.register_script(ECHO)
    await conn.script(script, [unique()], ["warm"])
    key = unique()
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.script(script, [key], ["never"])
    assert scope.cancelled_caught
    assert raw.get(key) is None


def incr_calls(raw: redis.Redis) -> int:
    return int(raw.info("commandstats").get("cmdstat_incr", {}).get("calls", 0))


async def test_plain_commands_share_the_wire_with_scripts_each_caller_its_own_reply(conn, raw):
    """``command``: 50 callers' INCRs, interleaved with scripts, all on the scripts' one
    connection, pipelined (no thread, no connection of redis-py's), each reply its own."""
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    before_connections = connections(raw)
    before_reads = reads_processed(raw)
    before_incrs = incr_calls(raw)
    counts: dict[int, list[int]] = {}
    echoed: list[bool] = []

    async def caller(i: int) -> None:
        counts[i] = [await conn.command("INCR", f"{prefix}:{i}") for _ in range(10)]
        value = f"v{i}"
        echoed.append(await conn.script(script, [f"{prefix}:s{i}"], [value]) == value.encode())

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(caller, i)
    assert counts == {i: list(range(1, 11)) for i in range(50)}  # ints, each key's own
    assert all(echoed) and len(echoed) == 50
    assert incr_calls(raw) - before_incrs == 500  # each sent once
    assert not connections(raw) - before_connections
    assert reads_processed(raw) - before_reads < 275  # pipelined: fewer reads than calls
    assert await conn.command("GET", f"{prefix}:7") == b"10"
    assert await conn.command("GET", f"{prefix}:none") is None


async def test_an_error_reply_to_a_command_is_raised_and_the_wire_kept(conn, raw):
    key = unique()
    raw.set(key, "text")
    await conn.command("GET", key)
    shared = conn._shared
    with pytest.raises(redis.ResponseError, match="not an integer"):
        await conn.command("INCR", key)
    assert conn._shared is shared and shared is not None and shared.lost is None
    assert await conn.command("GET", key) == b"text"


async def test_without_a_wire_a_command_goes_through_redis_py(redis_server, raw):
    """A URL the wire does not take (a query option) keeps redis-py's threads."""
    connection = RedisConnection.from_url(redis_server.url + "?health_check_interval=15")
    key = unique()
    try:
        assert connection.wire is None
        assert [await connection.command("INCR", key) for _ in range(3)] == [1, 2, 3]
        assert connection._shared is None
    finally:
        await connection.close()
    assert raw.get(key) == b"3"


class _EchoBoth:
    """ECHO both ways, as ``scripts.LuaScript`` gives a script: a function of a library of
    its own (FCALL) and the EVALSHA script."""

    def __init__(self, client: redis.Redis) -> None:
        self._eval = client.register_script(ECHO)
        self.sha = self._eval.sha
        self.script = ECHO
        self.function = "wiretest_" + uuid.uuid4().hex[:12]
        body = ECHO.replace("KEYS", "keys").replace("ARGV", "args")
        self.library = (
            f"#!lua name={self.function}\n"
            f"redis.register_function('{self.function}', function(keys, args) {body} end)\n"
        )

    def __call__(self, keys: Any = (), args: Any = ()) -> Any:
        return self._eval(keys=keys, args=args)


@pytest.mark.parametrize("refusal", ["NOSCRIPT", "Function not found"])
async def test_a_cancelled_caller_whose_call_is_sent_again_runs_it_whole(conn, raw, refusal):
    """A call refused for a script or function the server lost is sent again with its load
    (a ``follow_up``): by then its caller's call has begun, so a caller cancelled while
    the first request was on the wire still has it run, once, and the replies of the
    others stay their own."""
    script: Any = _EchoBoth(conn.client)
    if refusal == "NOSCRIPT":
        script = conn.client.register_script(ECHO)  # no library: EVALSHA
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    if refusal == "NOSCRIPT":
        raw.script_flush()
    else:
        raw.function_delete(script.function)
    kept = await every_other_cancelled_on_the_wire(
        conn, raw, lambda i: conn.script(script, [f"{prefix}:{i}"], [f"v{i}"])
    )
    assert {i for i in range(30) if raw.get(f"{prefix}:{i}") == f"v{i}".encode()} == set(range(30))
    assert all(kept[i] == f"v{i}".encode() for i in kept) and set(kept) >= set(range(1, 30, 2))
    assert await conn.script(script, [prefix], ["next"]) == b"next"
    if refusal != "NOSCRIPT":
        raw.function_delete(script.function)


async def test_a_cancelled_command_caller_neither_abandons_it_nor_shifts_the_replies(conn, raw):
    prefix = unique()
    await conn.command("INCR", f"{prefix}:warm")
    before = int(raw.info("commandstats").get("cmdstat_incrby", {}).get("calls", 0))
    kept = await every_other_cancelled_on_the_wire(
        conn, raw, lambda i: conn.command("INCRBY", f"{prefix}:{i}", i + 1)
    )
    after = int(raw.info("commandstats").get("cmdstat_incrby", {}).get("calls", 0))
    assert after - before == 30  # each sent once, the cancelled callers' too
    assert [raw.get(f"{prefix}:{i}") for i in range(30)] == [b"%d" % (i + 1) for i in range(30)]
    assert all(kept[i] == i + 1 for i in kept) and set(kept) >= set(range(1, 30, 2))
    assert await conn.command("INCR", f"{prefix}:0") == 2


def test_a_plain_command_is_written_as_the_general_writer_writes_it():
    """``_plain_command`` (a job body's ``INCR``) writes the same RESP as ``_command``
    of ``_arg``'s parts, for every kind of part, and refuses the same parts."""
    cases: list[tuple[Any, ...]] = [
        ("INCR", "k"),
        ("PING",),
        ("SET", "clé", b"\x00\r\nbytes", 7, -3, 2.5, 1e100, ""),
        (b"GET", b""),
    ]
    for parts in cases:
        assert wire._plain_command(parts) == wire._command(*[wire._arg(p) for p in parts])
    with pytest.raises(TypeError):
        wire._plain_command(("SET", "k", None))


def _watch_yields(shared: Any, monkeypatch) -> list[int]:
    """The bytes of the wire still unsent at each of its yields, from now on."""
    seen: list[int] = []
    yield_ = trio.lowlevel.cancel_shielded_checkpoint

    async def watched() -> None:
        seen.append(sum(len(p) for p in shared.outgoing))
        await yield_()

    monkeypatch.setattr(trio.lowlevel, "cancel_shielded_checkpoint", watched)
    return seen


async def _yields_with_outgoing(conn: RedisConnection, monkeypatch, aged: bool) -> list[int]:
    """One call on the idle wire; the bytes still unsent at each of the wire's yields."""
    script = conn.client.register_script(ECHO)
    key = unique()
    await conn.script(script, [key], ["warm"])  # the wire open and idle
    shared = conn._shared
    assert shared is not None
    shared.idle_since = trio.current_time() - (1.0 if aged else 0.0)
    seen = _watch_yields(shared, monkeypatch)
    assert await conn.script(script, [key], ["v"]) == b"v"
    return seen


async def test_a_lone_call_on_a_wire_idle_for_a_while_is_sent_before_the_yield(conn, monkeypatch):
    """An idle node's enqueue does not wait a scheduling round for company: sent first."""
    assert await _yields_with_outgoing(conn, monkeypatch, aged=True) == [0]


async def test_a_call_on_a_wire_busy_just_now_yields_before_its_send(conn, monkeypatch):
    """A wire busy a moment ago (a drain, concurrent callers) keeps one send a round."""
    seen = await _yields_with_outgoing(conn, monkeypatch, aged=False)
    assert len(seen) == 1 and seen[0] > 0


async def test_the_calls_of_a_lone_calls_round_follow_it_in_one_send(conn, raw):
    """The first call on a wire idle for a while goes alone, the others of its round in
    the next send, each with its own reply."""
    script = conn.client.register_script(ECHO)
    prefix = unique()
    await conn.script(script, [prefix], ["warm"])
    shared = conn._shared
    assert shared is not None
    shared.idle_since = trio.current_time() - 1.0
    before = reads_processed(raw)
    got: dict[int, Any] = {}

    async def caller(i: int) -> None:
        got[i] = await conn.script(script, [f"{prefix}:{i}"], [f"v{i}"])

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(caller, i)
    assert got == {i: f"v{i}".encode() for i in range(20)}
    assert reads_processed(raw) - before <= 4  # two sends (Redis may split a read)


async def test_a_lone_callers_calls_back_to_back_yield_before_their_send(
    conn, monkeypatch, mock_clock
):
    """The wire's idle time counts from its last reply: after a quiet spell a lone call
    goes before its yield, but the same caller's next call right after its answer (a
    wire busy a moment ago) yields first, one send a round, as a drain's calls do."""
    script = conn.client.register_script(ECHO)
    key = unique()
    await conn.script(script, [key], ["warm"])  # the wire open, at this (mock) time
    shared = conn._shared
    assert shared is not None
    mock_clock.jump(1.0)  # a quiet spell
    seen = _watch_yields(shared, monkeypatch)
    assert await conn.script(script, [key], ["after the spell"]) == b"after the spell"
    assert await conn.script(script, [key], ["right after"]) == b"right after"
    assert len(seen) == 2 and seen[0] == 0 and seen[1] > 0, seen
