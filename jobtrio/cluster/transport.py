"""The peer transport: control messages between nodes over websockets.

Each node listens on ``CLUSTER_PORT`` and dials every peer it sends to; a
connection carries messages one way (dialer to listener), which keeps the
code free of request/response bookkeeping: the protocols above are all
message-passing state machines that tolerate loss and reordering anyway.

Every frame is a versioned JSON envelope ``{"v": 1, "from": id, "msg": {...}}``.
The first frame of a connection is a hello carrying a token signed with
``CLUSTER_SECRET`` (a JWT, HS256, short-lived, naming the sender); a listener
drops a connection whose hello does not verify, and drops (with a logged
reason) any frame that is not a valid envelope. Nothing a peer sends can
crash the node. With TLS on, the same code runs over ``wss://``.

Only control traffic travels here (membership, elections, cancel requests):
measured on this machine a websocket round trip costs about 570 us, fine for
heartbeats and far too slow for a per-job path; jobs go through the Broker.

The simulator implements the same ``PeerTransport`` interface over a fake
network, so the actors above cannot tell the difference.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import math
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from ..backoff import Backoff
from .messages import PROTOCOL_VERSION

log = logging.getLogger("jobtrio.transport")

#: A connection that sends no hello within this many seconds is refused: an
#: honest peer sends it first thing, so only a stuck or hostile one waits longer.
HELLO_TIMEOUT = 5.0
#: Seconds to open a TCP (and TLS) connection to a peer before trying again later.
CONNECT_TIMEOUT = 2.0
#: Seconds to wait for a peer's close handshake: a leaving node must not hang on it.
DISCONNECT_TIMEOUT = 1.0
#: (first, maximum) seconds between dials of an unreachable peer: its messages
#: are periodic, so a redial every 2 s at most loses nothing the protocols need.
REDIAL = (0.05, 2.0)

MAX_FRAME_BYTES = 1024 * 1024
HELLO_TTL = 60.0
#: Clock difference between hosts a hello tolerates. Without it a peer whose
#: clock is even a little ahead is refused whenever its second has ticked over
#: and ours has not ("iat" in the future), so NTP-synced hosts would fail a
#: fraction of their connections.
CLOCK_SKEW = 10.0


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message from a peer: ``sender`` is the authenticated node id."""

    sender: str
    message: dict[str, Any]


class PeerTransport(abc.ABC):
    """What the cluster actors need from a network."""

    @abc.abstractmethod
    def send(self, node_id: str, message: dict[str, Any]) -> None:
        """Queue a message for a peer by id (dropped if its address is unknown)."""

    @abc.abstractmethod
    def send_to_address(self, address: str, message: dict[str, Any]) -> None:
        """Queue a message for an address whose node id is not known yet (joining)."""

    @abc.abstractmethod
    def set_address(self, node_id: str, address: str) -> None:
        """Learn (or update) where a peer listens."""

    @abc.abstractmethod
    def forget(self, node_id: str) -> None:
        """Stop sending to a peer that left or died."""

    @abc.abstractmethod
    async def receive(self) -> Incoming: ...


class TransportError(Exception):
    pass


def _key(secret: str) -> bytes:
    """A 256-bit HMAC key from any secret (short ones included; empty: no real auth)."""
    return hashlib.sha256(b"jobtrio-cluster:" + secret.encode()).digest()


def sign_hello(secret: str, node_id: str, address: str, now: float) -> str:
    return jwt.encode(
        {"sub": node_id, "addr": address, "iat": int(now), "exp": int(now + HELLO_TTL)},
        _key(secret),
        algorithm="HS256",
    )


def verify_hello(secret: str, token: str) -> tuple[str, str]:
    """(node_id, address) of a valid hello; ``TransportError`` with the reason otherwise."""
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=["HS256"],
            options={"require": ["sub", "exp", "iat"]},
            leeway=CLOCK_SKEW,
        )
    except jwt.ExpiredSignatureError:
        raise TransportError("hello token expired (are the clocks far apart?)") from None
    except jwt.InvalidTokenError as exc:
        raise TransportError(f"hello token rejected: {exc}") from None
    node_id, address = claims.get("sub"), claims.get("addr", "")
    if not isinstance(node_id, str) or not node_id or not isinstance(address, str):
        raise TransportError("hello token names no node")
    return node_id, address


#: A UTF-16 surrogate's escape, as text or bytes (a pair is valid text, checked after).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _valid_text(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_envelope(text: str | bytes) -> tuple[str, dict[str, Any]]:
    """(from, msg) of a frame; ``TransportError`` naming what is wrong otherwise."""
    if len(text) > MAX_FRAME_BYTES:
        raise TransportError(f"frame of {len(text)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise TransportError("frame is not JSON") from None
    if not isinstance(data, dict):
        raise TransportError("frame is not a JSON object")
    escape = _SURROGATE_ESCAPE if isinstance(text, str) else _SURROGATE_ESCAPE_BYTES
    if escape.search(text) and not _valid_text(data):  # type: ignore[arg-type]
        # json.loads reads a lone "\ud800" escape: a member id holding one reached the
        # node's events (member.up), which no UTF-8 wire (Redis's) can carry
        raise TransportError("frame holds a lone UTF-16 surrogate escape, which is not text")
    if data.get("v") != PROTOCOL_VERSION:
        raise TransportError(f"unsupported protocol version {data.get('v')!r}")
    sender, msg = data.get("from"), data.get("msg")
    if not isinstance(sender, str) or not isinstance(msg, dict):
        raise TransportError("frame lacks 'from' (string) or 'msg' (object)")
    return sender, msg


class WebsocketTransport(PeerTransport):
    """trio-websocket server plus one dialing task per peer, with reconnect backoff."""

    def __init__(
        self,
        node_id: str,
        advertise: str,
        secret: str,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        queue_size: int = 1000,
        cut_off: Callable[[], bool] | None = None,
    ) -> None:
        self.node_id = node_id
        self.advertise = advertise
        self._secret = secret
        self._host = host
        self._port = port
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._queue_size = queue_size
        self._addresses: dict[str, str] = {}
        self._outboxes: dict[str, trio.MemorySendChannel[str]] = {}
        self._incoming_send, self._incoming = trio.open_memory_channel[Incoming](math.inf)
        self._nursery: trio.Nursery | None = None
        self.port: int | None = None
        self.dropped = 0
        self.rejected = 0
        #: Test only (``jobtrio.testfaults``): while it returns True, every message in
        #: or out is dropped, as if the node were on the far side of a partition.
        self._cut_off = cut_off

    # -- PeerTransport -----------------------------------------------------------------
    def send(self, node_id: str, message: dict[str, Any]) -> None:
        address = self._addresses.get(node_id)
        if address is None:
            self.dropped += 1
            return
        self.send_to_address(address, message)

    def send_to_address(self, address: str, message: dict[str, Any]) -> None:
        if self._cut_off is not None and self._cut_off():
            self.dropped += 1
            return
        outbox = self._outboxes.get(address)
        if outbox is None:
            if self._nursery is None:
                raise TransportError("transport is not running")
            send, recv = trio.open_memory_channel[str](self._queue_size)
            self._outboxes[address] = send
            self._nursery.start_soon(self._dial_loop, address, recv)
            outbox = send
        frame = json.dumps({"v": PROTOCOL_VERSION, "from": self.node_id, "msg": message})
        try:
            outbox.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped += 1  # a dead peer's queue is full: control traffic is periodic

    def set_address(self, node_id: str, address: str) -> None:
        if node_id != self.node_id:
            self._addresses[node_id] = address

    def forget(self, node_id: str) -> None:
        address = self._addresses.pop(node_id, None)
        if address is not None and address not in self._addresses.values():
            outbox = self._outboxes.pop(address, None)
            if outbox is not None:
                outbox.close()

    async def receive(self) -> Incoming:
        return await self._incoming.receive()

    # -- running -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            server = await nursery.start(
                lambda task_status: serve_websocket(
                    self._handle,
                    self._host,
                    self._port,
                    ssl_context=self._server_ssl,
                    max_message_size=MAX_FRAME_BYTES,
                    task_status=task_status,
                )
            )
            self.port = server.port
            task_status.started(server.port)

    async def _handle(self, request: WebSocketRequest) -> None:
        try:
            ws = await request.accept()
        except ConnectionClosed:
            return
        peer = "?"
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                hello = await ws.get_message()
            sender, msg = parse_envelope(hello)
            node_id, address = verify_hello(self._secret, str(msg.get("hello", "")))
            if node_id != sender:
                raise TransportError(f"hello signed for {node_id!r} but sent as {sender!r}")
            peer = node_id
            if address:
                self.set_address(node_id, address)
            while True:
                frame = await ws.get_message()
                try:
                    sender, msg = parse_envelope(frame)
                except TransportError as exc:
                    self.rejected += 1
                    log.warning("dropped a frame from %s: %s", peer, exc)
                    continue
                if sender != peer:
                    self.rejected += 1
                    log.warning("dropped a frame from %s claiming to be %s", peer, sender)
                    continue
                if self._cut_off is not None and self._cut_off():
                    self.dropped += 1
                    continue
                self._incoming_send.send_nowait(Incoming(peer, msg))
        except TransportError as exc:
            self.rejected += 1
            log.warning("refused a peer connection (%s): %s", peer, exc)
            await ws.aclose(code=1008, reason=str(exc)[:100])
        except trio.TooSlowError:
            self.rejected += 1
            log.warning("refused a peer connection: no hello within %gs", HELLO_TIMEOUT)
            await ws.aclose(code=1008, reason="no hello")
        except ConnectionClosed:
            pass

    async def _dial_loop(self, address: str, outbox: trio.MemoryReceiveChannel[str]) -> None:
        scheme = "wss" if self._client_ssl is not None else "ws"
        url = f"{scheme}://{address}/peer"
        backoff = Backoff(*REDIAL)
        pending: str | None = None
        async with outbox:
            while True:
                try:
                    async with open_websocket_url(
                        url,
                        ssl_context=self._client_ssl,
                        connect_timeout=CONNECT_TIMEOUT,
                        disconnect_timeout=DISCONNECT_TIMEOUT,
                    ) as ws:
                        await self._send_hello(ws)
                        backoff.reset()
                        while True:
                            if pending is None:
                                try:
                                    pending = await outbox.receive()
                                except trio.EndOfChannel:
                                    return
                            await ws.send_message(pending)
                            pending = None
                except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as exc:
                    log.debug("peer %s unreachable: %r", address, exc)
                if outbox.statistics().open_send_channels == 0:
                    return  # forgotten (it left): what is queued is for nobody
                # what queued meanwhile waits (bounded): the protocols above
                # tolerate stale and duplicated messages
                await trio.sleep(backoff.next())

    async def _send_hello(self, ws: WebSocketConnection) -> None:
        token = sign_hello(self._secret, self.node_id, self.advertise, time.time())
        await ws.send_message(
            json.dumps({"v": PROTOCOL_VERSION, "from": self.node_id, "msg": {"hello": token}})
        )
