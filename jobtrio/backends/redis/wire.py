"""The connection to Redis: redis-py's client in threads, and sockets of its own for scripts.

redis-py's sync client is called through ``trio.to_thread.run_sync`` with one
``trio.CapacityLimiter`` per connection (8 calls at once by default) in front
of a ``ConnectionPool``. Scripts, which are every Broker move and every Store
write, and the plain commands sent with ``RedisConnection.command``, run over
a non-blocking socket of this module's own, waited on through trio, when that
pool is plain TCP (``_Wire``), and concurrent calls share it, pipelined: one
``send``, one wait and one ``recv`` serve many calls. A call alone costs 32-35
us of the process's CPU there (``bench/bench_wire.py`` on a quiet machine;
250-300 us through a thread, measured when the wire cost 70-90 us); among 10
concurrent callers the pipeline took it from 43.6 to 16.8 us (medians of 4
alternated pairs at load 4.5-6.3, where a call alone went from 51.2 to 48.9
us; docs/backends.md has the drains).

Failures: connection errors and timeouts become ``BackendUnavailable``.
redis-py's automatic retries are switched off: re-sending a claim or a finish
whose reply was lost would claim twice or report a done job as a stale token.
The pool checks a connection when handing it out (a socket the restarted
server closed is replaced), so the first call after Redis returns succeeds
and nothing needs restarting.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import hiredis
import redis
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, MasterDownError, TryAgainError
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..base import BackendUnavailable

if TYPE_CHECKING:
    from ...config import Settings

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
#: Seconds a pooled connection may idle before it is PINGed prior to use; catches
#: connections a failover or a NAT silently cut.
HEALTH_CHECK_INTERVAL = 15
#: Script calls in flight on one connection of the wire (queued or sent, not answered).
PIPELINE_DEPTH = 64
#: A call on a wire idle for this long (trio's clock) is sent at once, before the yield
#: that lets the calls of its scheduling round join it (they go in a second send right
#: after): a lone call, as an idle node's enqueue, no longer waits for the round. A wire
#: busy less long ago (a drain, concurrent callers) yields first, one send for the round.
LONE_CALL_IDLE = 0.001


#: InvalidResponse: a reply the parser could not read; the connection is given up.
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    redis.exceptions.InvalidResponse,
    OSError,
)
#: trio's words for a connection that broke under a call.
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
#: Refusals that mean "not now" (a failover, a restart loading its data; writes refused
#: while too few replicas answer, NOREPLICAS, or since a background save failed, MISCONF),
#: not "never".
_TRANSIENT = (MasterDownError, TryAgainError, ClusterDownError)
_TRANSIENT_PREFIXES = ("MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF")
#: Scripts go over the wire's own sockets when the pool allows it (see ``RedisConnection``).
NATIVE_SCRIPTS = True
#: Scripts that have a library (``scripts.LuaScript``) are called as functions (FCALL) where
#: Redis has them (see ``RedisConnection.script``); False: EVALSHA always.
FUNCTIONS = True

log = logging.getLogger("jobtrio.backends.redis")


def translated_error(exc: Exception) -> Exception:
    """The error a caller sees: an outage is ``BackendUnavailable``, the rest as raised."""
    if isinstance(exc, _UNAVAILABLE + _BROKEN):
        return BackendUnavailable("redis", str(exc) or type(exc).__name__)
    if isinstance(exc, trio.TooSlowError):  # the wire's connect timeout
        return BackendUnavailable("redis", "Timeout connecting to redis")
    if isinstance(exc, _TRANSIENT) or (
        isinstance(exc, redis.ResponseError) and str(exc).startswith(_TRANSIENT_PREFIXES)
    ):
        return BackendUnavailable("redis", str(exc) or type(exc).__name__)
    if isinstance(exc, redis.exceptions.OutOfMemoryError):  # both parsers' class for OOM
        # maxmemory reached under noeviction: every write is refused until memory is
        # freed or the limit raised, so "not now", as an outage (a submission is a 503
        # naming it, not a 500). A script is refused at its first write only, so no
        # move is half done (Redis keeps a script's writes atomic).
        return BackendUnavailable("redis", f"out of memory (maxmemory reached): {exc}")
    return exc


#: Error replies by their code, as redis-py raises them (its parser's table is private).
_REPLY_ERRORS: dict[str, type[redis.ResponseError]] = {
    "NOSCRIPT": redis.exceptions.NoScriptError,
    "READONLY": redis.exceptions.ReadOnlyError,
    "LOADING": redis.exceptions.BusyLoadingError,
    "MASTERDOWN": MasterDownError,
    "TRYAGAIN": TryAgainError,
    "CLUSTERDOWN": ClusterDownError,
    "OOM": redis.exceptions.OutOfMemoryError,
    "NOPERM": redis.exceptions.NoPermissionError,
    "ERR": redis.ResponseError,
}


def _reply_error(message: str) -> Exception:
    """An error reply as the exception redis-py would raise for it (returned, not raised)."""
    code = message.split(" ", 1)[0]
    if code in ("NOAUTH", "WRONGPASS"):
        return redis.AuthenticationError(message[len(code) + 1 :])
    kind = _REPLY_ERRORS.get(code)
    if kind is None:
        return redis.ResponseError(message)  # a script's own error_reply (FENCED ...)
    return kind(message[len(code) + 1 :])


def _function_missing(reply: Any) -> bool:
    """FCALL's refusal of a function this server does not hold (nothing ran)."""
    return isinstance(reply, redis.ResponseError) and str(reply).startswith("Function not found")


def _functions_refused(reply: Any) -> bool:
    """FCALL's refusal by a server without Redis Functions, or not for this user (nothing ran)."""
    return isinstance(reply, redis.exceptions.NoPermissionError) or (
        isinstance(reply, redis.ResponseError) and str(reply).startswith("unknown command")
    )


def _load_failed_for_good(reply: Any) -> bool:
    """A FUNCTION LOAD refused for good (no such command, not for this user, a library
    this server cannot run), not "not now" (a failover, a restart loading its data, the
    memory limit) nor "already there" (another call or node loaded it first)."""
    if not isinstance(reply, Exception):
        return False
    if isinstance(reply, _TRANSIENT + (redis.exceptions.OutOfMemoryError, redis.ReadOnlyError)):
        return False
    text = str(reply)
    return not (text.startswith(_TRANSIENT_PREFIXES + ("BUSY",)) or "already exists" in text)


def _arg(value: Any) -> bytes:
    """An argument as redis-py's encoder writes it."""
    kind = type(value)
    if kind is str:
        return value.encode()  # type: ignore[no-any-return]
    if kind is bytes:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is float:
        return repr(value).encode()
    raise TypeError(f"a redis argument must be str, bytes, int or float, not {kind.__name__}")


def _script_args(keys: Sequence[Any], args: Sequence[Any]) -> list[bytes]:
    """What follows a script's name or sha: the number of keys, the keys, the arguments
    (a str encoded in place: a call of ``_arg`` each cost 3% of an enqueue's packing)."""
    out = [b"%d" % len(keys)]
    out += [k.encode() if k.__class__ is str else _arg(k) for k in keys]
    out += [a.encode() if a.__class__ is str else _arg(a) for a in args]
    return out


def _command(*parts: bytes) -> bytes:
    """A command in RESP: ``*n``, then each part's ``$length`` and the part, each line
    ended by CRLF; one join with CRLF between (the lengths and parts put in place by
    slice: a loop appending three items a part cost 10% more an enqueue's packing)."""
    n = len(parts)
    items = [b""] * (2 * n + 2)
    items[0] = b"*%d" % n
    items[1:-1:2] = [b"$%d" % len(part) for part in parts]
    items[2:-1:2] = parts
    return b"\r\n".join(items)


def _plain_command(parts: Sequence[str | bytes | int | float]) -> bytes:
    """``_command`` of the parts as ``_arg`` writes them, for a command of a few parts (a
    job body's ``INCR``): each part appended in place, in 0.5 us where encoding each
    part with ``_arg`` and joining them cost 1.2."""
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        data = part.encode() if part.__class__ is str else _arg(part)  # type: ignore[union-attr]
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


class _Call:
    """One request's place on a shared wire: the replies it waits for, its task, its deadline."""

    __slots__ = ("expected", "replies", "task", "deadline", "parked", "lost")

    def __init__(self, expected: int, deadline: float) -> None:
        self.expected = expected
        self.replies: list[Any] = []
        self.task = trio.lowlevel.current_task()
        self.deadline = deadline
        self.parked = False  # waiting in ``request`` for its replies or its turn at the I/O
        self.lost: str | None = None  # why the wire was given up under the call


def _refuse_cancellation(_: Any) -> trio.lowlevel.Abort:
    # a parked call is shielded: it waits for its reply (or its wire's failure) whatever
    # the caller's scopes say, and its deadline is kept by the call holding the I/O
    return trio.lowlevel.Abort.FAILED


class _Wire:
    """One connection of the wire's own, shared by every concurrent call: a pipeline.

    Calls queue their requests in order, and Redis answers a connection's
    commands in order, so the n-th reply parsed is the n-th call's. No task
    of its own reads or writes: the oldest call still waiting holds the I/O
    for everybody (``_hold``). It sends every request queued (one ``send``
    for all), reads, gives each reply parsed to its call (waking its task),
    and once its own replies are in, hands the I/O on to the oldest call
    still waiting. A call made on an idle wire yields once before it sends,
    so that the calls made in the same scheduling round go in the same
    ``send``, unless the wire has been idle for ``LONE_CALL_IDLE``: then it
    sends first and yields after (the round's other calls go in a second
    ``send``), since a lone call, an idle node's enqueue, would wait a
    round for company that does not come (10 us idle, 35 us at 500
    submissions a second, of a queue-to-start of 0.5-0.8 ms). Calls made
    while replies are awaited go out when the holder next wakes, with
    whatever else queued meanwhile. Concurrent calls share each ``send``,
    each wait for readability and each ``recv`` (and Redis its read and
    write), where each paid its own before.

    Shielded, bounded: a call parked for its reply refuses cancellation, and
    the holder runs shielded under the earliest deadline of the calls in
    flight. A wire that fails (a reset, a close, a protocol error, that
    deadline) is given up whole (``fail``): closed, and every call still
    waiting on it fails; a late reply can never be read as another call's.

    hiredis (the C parser redis-py itself uses when installed) is sans-IO:
    bytes go in with ``feed``, whole replies come out of ``gets``. Error
    replies come back as the exception objects redis-py would raise
    (``NoScriptError``...), not raised. The socket is the standard library's,
    non-blocking: ``send`` goes straight to the kernel (waiting for room only
    when its buffer is full) and ``recv`` runs once trio says it is readable;
    trio's ``SocketStream`` passed through the scheduler at each of them.
    """

    __slots__ = ("sock", "reader", "idle_since", "calls", "outgoing", "lost", "scope")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reader = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse, replyError=_reply_error
        )
        self.idle_since = trio.current_time()
        #: the calls whose replies are awaited, oldest first (sent, or queued in ``outgoing``)
        self.calls: deque[_Call] = deque()
        self.outgoing: list[bytes] = []
        self.lost: str | None = None
        self.scope: trio.CancelScope | None = None  # the holder's, while a call holds the I/O

    async def request(self, payload: bytes, deadline: float, replies: int = 1) -> list[Any]:
        """Send ``payload`` (``replies`` commands) and return their replies, in order.

        Never abandoned on cancellation; past ``deadline`` (on trio's clock)
        the wire is given up. A lost wire raises ``redis.TimeoutError`` for a
        call whose own deadline passed, ``redis.ConnectionError`` otherwise.
        """
        if self.lost is not None:
            raise redis.ConnectionError(self.lost)
        call = _Call(replies, deadline)
        calls = self.calls
        idle = not calls
        calls.append(call)
        self.outgoing.append(payload)
        if not idle:
            scope = self.scope
            if scope is not None and deadline < scope.deadline:
                scope.deadline = deadline  # a NOSCRIPT reload keeps its call's deadline
            call.parked = True
            await trio.lowlevel.wait_task_rescheduled(_refuse_cancellation)
            if call.lost is not None:
                raise redis.ConnectionError(call.lost)
            if len(call.replies) == replies:
                return call.replies
        await self._hold(call, idle)
        return call.replies

    async def _hold(self, own: _Call, idle: bool) -> None:
        """Do the I/O for every call until ``own``'s replies are in, then hand it on."""
        deadline = own.deadline if idle else min(call.deadline for call in self.calls)
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            self.scope = scope
            try:
                if idle:
                    if trio.current_time() - self.idle_since >= LONE_CALL_IDLE:
                        # likely alone: sent now, the round's others in the next send
                        await self._flush()
                    # the calls made in this scheduling round queue behind this one meanwhile
                    await trio.lowlevel.cancel_shielded_checkpoint()
                await self._serve(own)
            except BaseException as exc:  # the deadline's Cancelled too, caught by the scope
                # the cause in words: redis-py's errors' repr is their category alone
                # ("network:ConnectionError"), which told the calls waiting nothing
                why = (
                    "a call on it timed out"
                    if isinstance(exc, trio.Cancelled)
                    else f"{type(exc).__name__}: {exc}"
                )
                self.fail(why)
                raise
            finally:
                self.scope = None
        if scope.cancelled_caught:
            if trio.current_time() >= own.deadline:
                raise redis.TimeoutError("Timeout reading from socket")
            raise redis.ConnectionError(self.lost)

    async def _serve(self, own: _Call) -> None:
        sock, reader, calls = self.sock, self.reader, self.calls
        while True:
            if self.lost is not None:  # closed under us (a close while we yielded)
                raise redis.ConnectionError(self.lost)
            if self.outgoing:
                await self._flush()
            value = reader.gets()
            if value is False:
                await trio.lowlevel.wait_readable(sock)
                try:
                    data = sock.recv(1 << 18)
                except BlockingIOError:
                    continue
                if not data:
                    raise redis.ConnectionError("redis closed the connection")
                reader.feed(data)
                continue
            call = calls[0]
            call.replies.append(value)
            if len(call.replies) == call.expected:
                calls.popleft()
                if call is own:
                    break
                self._wake(call)
        # the replies already read go to their calls now, not one call a scheduling round
        while calls and (value := reader.gets()) is not False:
            call = calls[0]
            call.replies.append(value)
            if len(call.replies) == call.expected:
                calls.popleft()
                self._wake(call)
        if calls:
            self._wake(calls[0])  # the oldest call still waiting holds the I/O next
        else:
            self.idle_since = trio.current_time()

    async def _flush(self) -> None:
        """Send every request queued, in one ``send`` while the kernel takes it whole."""
        sock, outgoing = self.sock, self.outgoing
        while outgoing:
            view = memoryview(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))
            outgoing.clear()
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)

    def _wake(self, call: _Call) -> None:
        if call.parked:
            call.parked = False
            trio.lowlevel.reschedule(call.task)

    def fail(self, why: str) -> None:
        """Give the wire up: closed, every call still waiting on it fails; never reused."""
        if self.lost is None:
            self.lost = f"connection lost under the call ({why})"
            self.close()  # wakes the holder if it waits on the socket
        calls = self.calls
        while calls:
            call = calls.popleft()
            call.lost = self.lost
            self._wake(call)
        self.outgoing.clear()

    def close(self) -> None:
        if self.sock.fileno() != -1:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


class RedisConnection:
    """A redis-py client and its limiter, plus the scripts' own pipelined connection.

    The Broker and the Store of one node can share one (``connection=``), so
    the node holds one pool, one scripts' connection and one bound on each.

    Scripts (every move of the Broker and every Store write) do not go through
    redis-py when ``wire`` says where and how to connect: they go over a
    connection of their own (``_Wire``), shared by every concurrent call
    (pipelined). A call through a thread cost 250-300 us of CPU here against
    70-90 us for the same EVALSHA on the wire then (thread wake-ups, the
    result's trip back to trio, redis-py's pure-Python packing and parsing
    under the GIL). ``from_url`` and ``from_settings`` build both the client
    and ``wire`` from the same address, credentials, database and timeouts;
    TLS, Unix sockets, URL query options and Sentinel get no ``wire`` and
    keep the threads, as does every other command but those sent with
    ``command``.

    Bounds: ``limiter`` (``pool_size`` tokens) bounds the calls in redis-py's
    threads, scripts included when they take that way; on the wire, at most
    ``pipeline_depth`` calls are in flight (queued or sent, not yet
    answered), and the calls past it wait their turn, in order.
    """

    def __init__(
        self,
        client: redis.Redis,
        pool_size: int = DEFAULT_POOL_SIZE,
        wire: WireOptions | None = None,
        *,
        pipeline_depth: int = PIPELINE_DEPTH,
    ) -> None:
        self.client = client
        self.limiter = trio.CapacityLimiter(pool_size)
        self.wire = wire
        #: the scripts' one connection, shared (pipelined) by concurrent calls
        self._shared: _Wire | None = None
        self._connecting = trio.Lock()
        #: room for calls in flight on the wire (a Semaphore: taken and given back in
        #: well under a microsecond, a CapacityLimiter's bookkeeping cost 2 us a call)
        self._room = trio.Semaphore(pipeline_depth)
        #: False once Redis refused Redis Functions for good: EVALSHA from then on
        self.functions = True

    def _refuse_functions(self, why: Any) -> None:
        if self.functions:
            self.functions = False
            log.warning("redis refuses Redis Functions (%s): scripts run with EVALSHA", why)

    def _function_of(self, script: Any) -> str | None:
        """The function to FCALL for ``script``, None for EVALSHA."""
        if not (FUNCTIONS and self.functions):
            return None
        return getattr(script, "function", None)

    @staticmethod
    def _options(socket_timeout: float, pool_size: int) -> dict[str, Any]:
        return {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": min(DEFAULT_CONNECT_TIMEOUT, socket_timeout),
            "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_INTERVAL,
            # no blind re-sends: a retried claim or finish would not be idempotent
            "retry": Retry(NoBackoff(), 0),
            "max_connections": pool_size * 2,
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        db: int | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        pipeline_depth: int = PIPELINE_DEPTH,
    ) -> RedisConnection:
        """redis:// or rediss://; a password or db in the URL wins over the arguments."""
        options = cls._options(socket_timeout, pool_size)
        if password:
            options["password"] = password
        if db is not None:
            options["db"] = db
        pool = redis.ConnectionPool.from_url(url, **options)
        wire = WireOptions.from_url(url, password=password, db=db, socket_timeout=socket_timeout)
        return cls(
            redis.Redis(connection_pool=pool), pool_size, wire, pipeline_depth=pipeline_depth
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> RedisConnection:
        """REDIS_SENTINELS first, then REDIS_URL, then REDIS_ADDR (+ REDIS_PASSWORD, REDIS_DB)."""
        password = settings.redis_password or None
        if settings.redis_sentinels:
            options = cls._options(socket_timeout, pool_size)
            hosts = [_split_host_port(item) for item in settings.redis_sentinels]
            sentinel = Sentinel(
                hosts,
                sentinel_kwargs={
                    "socket_timeout": socket_timeout,
                    "socket_connect_timeout": options["socket_connect_timeout"],
                },
                **{k: v for k, v in options.items() if k != "max_connections"},
            )
            client = sentinel.master_for(
                settings.redis_sentinel_master,
                password=password,
                db=settings.redis_db,
                max_connections=options["max_connections"],
            )
            return cls(client, pool_size)
        if settings.redis_url:
            return cls.from_url(
                settings.redis_url,
                password=password,
                db=settings.redis_db,
                pool_size=pool_size,
                socket_timeout=socket_timeout,
            )
        if settings.redis_addr:
            host, port = _split_host_port(settings.redis_addr)
            pool = redis.ConnectionPool(
                host=host,
                port=port,
                password=password,
                db=settings.redis_db,
                **cls._options(socket_timeout, pool_size),
            )
            wire = WireOptions(
                host,
                port,
                db=settings.redis_db,
                password=password,
                socket_timeout=socket_timeout,
            )
            return cls(redis.Redis(connection_pool=pool), pool_size, wire)
        raise ValueError("redis is not configured: set REDIS_ADDR, REDIS_URL or REDIS_SENTINELS")

    async def run(self, fn: Callable[[], T]) -> T:
        """Run one blocking client call in a worker thread, translating outages.

        The thread is never abandoned on cancellation: a claim whose reply
        was dropped would leave jobs running nowhere until their lease ends.
        ``socket_timeout`` bounds the wait.
        """
        try:
            return await trio.to_thread.run_sync(fn, limiter=self.limiter)
        except (redis.RedisError, OSError) as exc:
            translated = translated_error(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def script(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script: its function (FCALL) where Redis has Redis Functions and
        ``script`` a library (``scripts.LuaScript``), else EVALSHA; either loaded once
        again when the server lost it (a restart, a flush, a failover to a server that
        never had it).

        On the wire's own connection when the pool allows (see the class), else
        through ``run``. Either way the call is never abandoned on
        cancellation (shielded, bounded by ``socket_timeout``): a claim whose
        reply was dropped would leave jobs running nowhere until their lease
        ends; and redis-py's rule of no blind re-sends holds, since only a
        refusal that ran nothing is sent again: NOSCRIPT, "Function not found",
        and FCALL refused by a server without Redis Functions (then EVALSHA).

        A function Redis has not got is loaded (FUNCTION LOAD, sent with the
        FCALL again); a load refused for good (a server without Redis
        Functions, or a user not allowed them: some managed Redis) switches
        this connection to EVALSHA, logged once; one refused for now (the
        memory limit, a failover) runs this call with EVALSHA.

        On the wire, concurrent calls share one connection, pipelined
        (``_Wire``). A call that times out, or a connection that breaks or
        closes, fails every call in flight on it with ``BackendUnavailable``;
        the connection is never used again, and the next call opens another.
        """
        if self.wire is None or not NATIVE_SCRIPTS:
            return await self.run(lambda: self._script_in_thread(script, keys, args))
        function = self._function_of(script)
        tail = _script_args(keys, args)
        if function is not None:
            payload = _command(b"FCALL", function.encode(), *tail)
        else:
            payload = _command(b"EVALSHA", script.sha.encode(), *tail)
        [reply] = await self._request(payload)
        if function is not None and isinstance(reply, redis.ResponseError):
            if _function_missing(reply):
                load = _command(b"FUNCTION", b"LOAD", _arg(script.library))
                loaded, reply = await self._request(load + payload, 2, follow_up=True)
                if _load_failed_for_good(loaded):
                    self._refuse_functions(loaded)
            elif _functions_refused(reply):
                self._refuse_functions(reply)
            if _function_missing(reply) or _functions_refused(reply):
                payload = _command(b"EVALSHA", script.sha.encode(), *tail)
                [reply] = await self._request(payload, follow_up=True)
        if isinstance(reply, redis.exceptions.NoScriptError):
            load = _command(b"SCRIPT", b"LOAD", _arg(script.script))
            reply = (await self._request(load + payload, 2, follow_up=True))[1]
        if isinstance(reply, Exception):
            raise translated_error(reply)
        return reply

    async def command(self, *parts: str | bytes | int | float) -> Any:
        """One plain command (``INCR``, ``GET``...) and its reply, on the wire's
        pipelined connection when there is one, else through ``run``.

        For a caller whose command would cost more as a script or in a thread:
        from 10 tasks, an ``INCR`` as a one-line script (EVALSHA) cost Redis
        9.1 us and this process 31.3 us, the command itself 5.1 and 26.6 us
        (medians of 3 alternated pairs of 20,000 calls, load 3.7); through a
        thread a call costs 250-300 us. The reply is hiredis's
        (an int, bytes, a list, None), without redis-py's per-command
        parsing: the same as redis-py's for the commands that answer an
        integer, a string or nil; for others through ``run`` it is
        redis-py's. Never abandoned on cancellation and never sent twice,
        as ``script``.
        """
        if self.wire is None:
            return await self.run(lambda: self.client.execute_command(*parts))
        [reply] = await self._request(_plain_command(parts))
        if isinstance(reply, Exception):
            raise translated_error(reply)
        return reply

    async def _request(
        self, payload: bytes, replies: int = 1, *, follow_up: bool = False
    ) -> list[Any]:
        """The ``replies`` replies to ``payload`` on the shared wire, in order (an error
        reply as its exception, returned, not raised).

        Waits for room on the wire first (``pipeline_depth``), opens the
        connection if needs be, and is bounded by ``socket_timeout`` from
        there. A first request is cancellable until it has room (nothing sent
        yet); a ``follow_up`` (the same call sent again after a refusal that
        ran nothing: a script to load first) is not cancellable at all, since
        its caller's call has begun and must run whole. A failure gives the
        wire up (``_discard``) and raises ``BackendUnavailable``.
        """
        room = self._room
        if not follow_up:
            await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts no call
        try:
            room.acquire_nowait()
        except trio.WouldBlock:
            if follow_up:
                with trio.CancelScope(shield=True):  # the calls in flight free room in time
                    await room.acquire()
            else:
                await room.acquire()  # before anything is sent: cancellable
        options = self.wire
        assert options is not None  # the callers take ``run`` without one
        wire = None
        try:
            now = trio.current_time()
            deadline = now + options.socket_timeout
            wire = self._shared
            if wire is None or not self._usable(wire, now):
                wire = await self._connect(deadline)
            return await wire.request(payload, deadline, replies)
        except (
            redis.RedisError,
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
        ) as exc:
            self._discard(wire)
            raise translated_error(exc) from exc
        finally:
            room.release()

    def _script_in_thread(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``script`` through redis-py (in a worker thread), as ``script`` does on the wire."""
        function = self._function_of(script)
        if function is not None:
            client = self.client
            try:
                return client.execute_command("FCALL", function, len(keys), *keys, *args)
            except redis.ResponseError as exc:
                if _functions_refused(exc):
                    self._refuse_functions(exc)
                elif not _function_missing(exc):
                    raise
                else:
                    try:
                        client.execute_command("FUNCTION", "LOAD", script.library)
                    except redis.ResponseError as refused:
                        if _load_failed_for_good(refused):
                            self._refuse_functions(refused)
                    try:
                        return client.execute_command("FCALL", function, len(keys), *keys, *args)
                    except redis.ResponseError as again:
                        if not (_function_missing(again) or _functions_refused(again)):
                            raise
        return script(keys=keys, args=args)

    @staticmethod
    def _usable(wire: _Wire, now: float) -> bool:
        """Not lost, and busy or idle for less than the health check interval (else not
        trusted). The one test of both ``_request`` (with the time it already read) and
        ``_connect``: an inlined copy in ``_request`` could drift from this one unseen,
        since ``_connect``'s check hides a stricter copy and only a looser one shows."""
        if wire.lost is not None:
            return False
        return bool(wire.calls) or now - wire.idle_since < HEALTH_CHECK_INTERVAL

    async def _connect(self, deadline: float) -> _Wire:
        """The shared connection, opened if needs be; the calls meanwhile wait for it."""
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            async with self._connecting:
                wire = self._shared
                if wire is None or not self._usable(wire, trio.current_time()):
                    self._discard(wire)  # an idle one has no call to fail
                    wire = await self._open(deadline)
                    self._shared = wire
                return wire
        assert scope.cancelled_caught
        raise redis.TimeoutError("Timeout connecting to redis")

    async def _open(self, deadline: float) -> _Wire:
        options = self.wire
        assert options is not None
        with trio.fail_after(options.connect_timeout):
            stream = await trio.open_tcp_stream(options.host, options.port)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        wire = _Wire(socket.socket(fileno=stream.socket.detach()))
        hello = []
        if options.password is not None:
            credentials = [options.password]
            if options.username is not None:
                credentials.insert(0, options.username)
            hello.append(_command(b"AUTH", *(_arg(c) for c in credentials)))
        if options.db:
            hello.append(_command(b"SELECT", _arg(options.db)))
        if hello:
            try:
                for reply in await wire.request(b"".join(hello), deadline, len(hello)):
                    if isinstance(reply, Exception):
                        raise reply
            except BaseException:
                wire.fail("refused at connect")
                raise
        return wire

    def _discard(self, wire: _Wire | None) -> None:
        """Give ``wire`` up (closed, its calls failed) and hand it out no more."""
        if wire is not None:
            wire.fail("given up after an error")  # no await: closing must not wait on a dead peer
            if self._shared is wire:
                self._shared = None

    async def ping(self) -> None:
        await self.run(self.client.ping)

    async def close(self) -> None:
        if self._shared is not None:
            self._discard(self._shared)
        await trio.to_thread.run_sync(self.client.close)


@dataclass(frozen=True, slots=True)
class WireOptions:
    """Where and how trio's own connections reach Redis, from the URL or the settings.

    Built from what the operator wrote, never read back out of redis-py's pool:
    an option this class does not know (TLS, a Unix socket, a URL query) gives
    no ``WireOptions`` and the scripts take redis-py's threads instead.
    """

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        # the client's connect timeout is the shorter of the two, as for redis-py's pool
        object.__setattr__(self, "connect_timeout", min(self.connect_timeout, self.socket_timeout))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        db: int | None = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> WireOptions | None:
        """``redis://[[user]:password@]host[:port][/db]`` as redis-py reads it; None otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or parts.query or parts.fragment or not parts.hostname:
            return None
        path = parts.path.lstrip("/")
        try:
            port = parts.port or 6379
            url_db = int(path) if path else None
        except ValueError:
            return None
        return cls(
            parts.hostname,
            port,
            db=url_db if url_db is not None else (db or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else (password or None),
            socket_timeout=socket_timeout,
        )


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host.strip("[]"), int(port)
