"""A lean HTTP/1.1 load client on trio sockets, for the single-POST measurements.

A general client (httpx) spends a few hundred microseconds of Python per
request; on a small machine that is CPU taken from the server being measured,
and it would flatten the difference between the node and the framework's
ceiling. This one sends prebuilt request bytes over keep-alive connections
and reads the status and a ``Content-Length`` body, nothing more: enough for
hypercorn, which is all it talks to.
"""

from __future__ import annotations

import json
import time
from typing import Any

import trio

#: Most connections the open-loop sender holds; a send waits for a free one beyond that.
MAX_CONNECTIONS = 32


class ConnectionClosed(Exception):
    """The server closed the connection before a whole answer came."""


class Connection:
    """One keep-alive connection; ``request`` sends a request and returns (status, body)."""

    def __init__(self, stream: trio.SocketStream, host: str, port: int) -> None:
        self.stream = stream
        self.host = host
        self.port = port
        self.buffer = b""

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(await trio.open_tcp_stream(host, port), host, port)

    def build(self, method: str, path: str, body: bytes | None = None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + (body or b"")

    async def send(self, request: bytes) -> tuple[int, bytes]:
        try:
            await self.stream.send_all(request)
            while b"\r\n\r\n" not in self.buffer:
                await self._fill()
        except (trio.BrokenResourceError, ConnectionClosed):
            if self.buffer:
                raise
            # the server dropped this keep-alive connection (idle, or reset) before
            # answering: the request was not served; send it once on a new connection
            await self._reconnect()
            await self.stream.send_all(request)
            while b"\r\n\r\n" not in self.buffer:
                await self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
        while len(self.buffer) < length:
            await self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if close:  # hypercorn closes a connection after keep_alive_max_requests: reconnect
            await self._reconnect()
        return status, body

    async def _reconnect(self) -> None:
        await self.stream.aclose()
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        self.buffer = b""

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        return await self.send(self.build(method, path, body))

    async def get_json(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self.buffer += chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


async def post_rate(
    host: str, port: int, path: str, body: bytes, clients: int, seconds: float
) -> float:
    """Requests/s of ``clients`` connections POSTing ``body`` back to back for ``seconds``."""
    counts = [0] * clients
    connections = [await Connection.open(host, port) for _ in range(clients)]
    request = connections[0].build("POST", path, body)
    for c in connections:  # warm up: the first request of a connection is not counted
        status, answer = await c.send(request)
        if status != 201:
            raise RuntimeError(f"POST {path}: {status} {answer[:300]!r}")
    deadline = trio.current_time() + seconds

    async def client(i: int) -> None:
        c = connections[i]
        while trio.current_time() < deadline:
            status, answer = await c.send(request)
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {answer[:300]!r}")
            counts[i] += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
    elapsed = time.perf_counter() - start
    for c in connections:
        await c.aclose()
    return sum(counts) / elapsed


async def offered_load(
    host: str, port: int, path: str, body: bytes, rate: float, count: int
) -> list[tuple[float, str]]:
    """POST ``count`` jobs at ``rate`` a second on a fixed schedule (open loop).

    Each send is due at its scheduled time whether or not earlier answers came
    back; it takes a free connection (up to ``MAX_CONNECTIONS``, else it waits
    for one). Its time is taken when it is due, before any such wait, so a
    slow server shows as latency, not as a lower offered rate. Returns each
    job's wall-clock send time and id.
    """
    idle: list[Connection] = []
    sent: list[tuple[float, str]] = []
    slots = trio.Semaphore(MAX_CONNECTIONS)

    async def one() -> None:
        at = time.time()
        async with slots:
            c = idle.pop() if idle else await Connection.open(host, port)
            status, answer = await c.send(c.build("POST", path, body))
            if status != 201:
                raise RuntimeError(f"POST {path}: {status} {answer[:300]!r}")
            sent.append((at, json.loads(answer)["id"]))
            idle.append(c)

    for _ in range(4):
        idle.append(await Connection.open(host, port))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            await trio.sleep_until(start + i / rate)
            nursery.start_soon(one)
    for c in idle:
        await c.aclose()
    return sent
