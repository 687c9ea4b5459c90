"""The connection to Redis: redis-py's client in threads, and sockets of its own for scripts.

redis-py's sync client is called through ``trio.to_thread.run_sync`` with one
``trio.CapacityLimiter`` per connection (8 calls at once by default) in front
of a ``ConnectionPool``. Scripts, which are every Broker move and every Store
write, run over non-blocking sockets of this module's own, waited on through
trio, when that pool is plain TCP (``_Wire``: a call costs 32-35 us of the
process's CPU there, ``bench/bench_wire.py`` on a quiet machine; 250-300 us
through a thread, measured when the wire cost 70-90 us).

Failures: connection errors and timeouts become ``BackendUnavailable``.
redis-py's automatic retries are switched off: re-sending a claim or a finish
whose reply was lost would claim twice or report a done job as a stale token.
The pool checks a connection when handing it out (a socket the restarted
server closed is replaced), so the first call after Redis returns succeeds
and nothing needs restarting.
"""

from __future__ import annotations

import socket
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


_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, OSError)
#: trio's words for a connection that broke under a call.
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
#: Refusals that mean "not now" (a failover, a restart loading its data), not "never".
_TRANSIENT = (MasterDownError, TryAgainError, ClusterDownError)
_TRANSIENT_PREFIXES = ("MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN")
#: Scripts go over the wire's own sockets when the pool allows it (see ``RedisConnection``).
NATIVE_SCRIPTS = True


def translated_error(exc: Exception) -> Exception:
    """The error a caller sees: an outage is ``BackendUnavailable``, the rest as raised."""
    if isinstance(exc, _UNAVAILABLE + _BROKEN):
        return BackendUnavailable("redis", str(exc) or type(exc).__name__)
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


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out += (b"$%d\r\n" % len(part), part, b"\r\n")
    return b"".join(out)


class _Wire:
    """One connection of the wire's own; replies are read by hiredis' RESP parser.

    hiredis (the C parser redis-py itself uses when installed) is sans-IO:
    bytes go in with ``feed``, whole replies come out of ``gets``, so it works
    over a plain socket unchanged. Error replies come back as the exception
    objects redis-py would raise (``NoScriptError``...), not raised.

    The socket is the standard library's, non-blocking, and a request waits
    only where it must: ``send`` goes straight to the kernel (waiting for room
    only when its buffer is full) and the reply is read once trio says the
    socket is readable. trio's ``SocketStream`` passed through the scheduler at
    each send and each receive, and a one-line script's call spent more time
    there than in Redis.
    """

    __slots__ = ("sock", "reader", "idle_since")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.reader = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse, replyError=_reply_error
        )
        self.idle_since = trio.current_time()

    async def request(self, payload: bytes, replies: int = 1) -> list[Any]:
        sock = self.sock
        view = memoryview(payload)
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
        out: list[Any] = []
        reader = self.reader
        waited = False
        while len(out) < replies:
            value = reader.gets()
            if value is not False:
                out.append(value)
                continue
            await trio.lowlevel.wait_readable(sock)
            waited = True
            try:
                data = sock.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                raise redis.ConnectionError("redis closed the connection")
            reader.feed(data)
        if not waited:  # every call is a checkpoint, as trio's own I/O is
            await trio.lowlevel.checkpoint()
        return out

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


class RedisConnection:
    """A redis-py client plus the limiter every call goes through.

    The Broker and the Store of one node can share one (``connection=``), so
    the node holds one pool and one bound on calls in flight to Redis.

    Scripts (every move of the Broker and every Store write) do not go through
    redis-py when ``wire`` says where and how to connect: they go over
    connections of their own (``_Wire``). A call through a thread cost
    250-300 us of CPU here against 70-90 us for the same EVALSHA on the wire
    then (thread wake-ups, the result's trip back to trio, redis-py's
    pure-Python packing and parsing under the GIL): 15 us of every drained
    job. The wire's call is 32-35 us since it skips trio's ``SocketStream``.
    ``from_url`` and ``from_settings`` build both the client and ``wire``
    from the same address, credentials, database and timeouts; TLS, Unix
    sockets, URL query options and Sentinel get no ``wire`` and keep the
    threads, as does every other command.
    """

    def __init__(
        self,
        client: redis.Redis,
        pool_size: int = DEFAULT_POOL_SIZE,
        wire: WireOptions | None = None,
    ) -> None:
        self.client = client
        self.limiter = trio.CapacityLimiter(pool_size)
        self.wire = wire
        self._wires: list[_Wire] = []

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
    ) -> RedisConnection:
        """redis:// or rediss://; a password or db in the URL wins over the arguments."""
        options = cls._options(socket_timeout, pool_size)
        if password:
            options["password"] = password
        if db is not None:
            options["db"] = db
        pool = redis.ConnectionPool.from_url(url, **options)
        wire = WireOptions.from_url(url, password=password, db=db, socket_timeout=socket_timeout)
        return cls(redis.Redis(connection_pool=pool), pool_size, wire)

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
        """Run a registered script (EVALSHA, loading it once if the server lost it).

        On the wire's own connections when the pool allows (see the class), else
        through ``run``. Either way the call is never abandoned on
        cancellation (shielded, bounded by ``socket_timeout``): a claim whose
        reply was dropped would leave jobs running nowhere until their lease
        ends; and redis-py's rule of no blind re-sends holds, since only a
        NOSCRIPT refusal (the script did not run) is sent again.
        """
        options = self.wire
        if options is None or not NATIVE_SCRIPTS:
            return await self.run(lambda: script(keys=keys, args=args))
        payload = _command(
            b"EVALSHA",
            script.sha.encode(),
            b"%d" % len(keys),
            *(_arg(k) for k in keys),
            *(_arg(a) for a in args),
        )
        async with self.limiter:
            wire = None
            # one scope, shielded from the caller's cancellation and bounded by its own
            # deadline: a fail_after inside a shielding scope cost a second scope and a
            # generator-based context manager at every call (a quarter of a call's CPU)
            deadline = trio.current_time() + options.socket_timeout
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                try:
                    wire = await self._wire()
                    [reply] = await wire.request(payload)
                    if isinstance(reply, redis.exceptions.NoScriptError):
                        load = _command(b"SCRIPT", b"LOAD", _arg(script.script))
                        reply = (await wire.request(load + payload, 2))[1]
                except (
                    redis.RedisError,
                    OSError,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                ) as exc:
                    self._discard(wire)
                    raise translated_error(exc) from exc
                except BaseException:  # the deadline's Cancelled too, caught by the scope
                    self._discard(wire)  # its reply may still come: never reuse it
                    raise
            if scope.cancelled_caught:
                raise BackendUnavailable("redis", "Timeout reading from socket")
            assert wire is not None
            wire.idle_since = trio.current_time()
            self._wires.append(wire)
        if isinstance(reply, Exception):
            raise translated_error(reply)
        return reply

    async def _wire(self) -> _Wire:
        """An idle connection, or a new one (one idle too long is replaced, not trusted)."""
        now = trio.current_time()
        while self._wires:
            wire = self._wires.pop()
            if now - wire.idle_since < HEALTH_CHECK_INTERVAL:
                return wire
            self._discard(wire)
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
                for reply in await wire.request(b"".join(hello), len(hello)):
                    if isinstance(reply, Exception):
                        raise reply
            except BaseException:
                self._discard(wire)
                raise
        return wire

    def _discard(self, wire: _Wire | None) -> None:
        if wire is not None:
            wire.close()  # no await: closing must not wait on a dead peer

    async def ping(self) -> None:
        await self.run(self.client.ping)

    async def close(self) -> None:
        while self._wires:
            self._discard(self._wires.pop())
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
