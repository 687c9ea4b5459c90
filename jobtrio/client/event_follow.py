"""Following a node's event stream: the query, the messages and the reconnections,
without the I/O.

``Client.events`` (a blocking iterator) and ``AsyncClient.events`` (a task
feeding a channel) share this, so both resume from the same id, read the
node's ``stream.ready`` alike and give up on the same close codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
from httpx_ws import WebSocketDisconnect

from .errors import ConnectionFailed, JobtrioError, error_from_response

#: Close codes after which reconnecting cannot help (the request itself is refused).
_FINAL_CLOSES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
#: RFC 6455 "message too big": since httpx-ws 0.10 the client itself closes with it
#: when a message is larger than ``MAX_MESSAGE_BYTES``.
_TOO_BIG_CLOSE = 1009
#: Largest event stream message the clients accept (httpx-ws's ``max_message_size_bytes``).
#: httpx-ws 0.10 made that argument a limit on a whole message (64 KiB by default,
#: closing with 1009 past it), and it is also the most read from the socket at once, so
#: a larger limit costs a client draining a backlog memory (bench/bench_event_client.py).
#: A node keeps every message under it: with ``lines=true`` it joins events up to
#: ``LINES_MESSAGE_CHARS`` (128 Ki characters, 512 KiB at most in UTF-8; see
#: jobtrio/api/events.py) and no single event is near that (events carry no payloads,
#: errors are cut at 4,096 characters). The server's own WEBSOCKET_MAX_MESSAGE_BYTES
#: (64 KiB) bounds what clients send it, not what it sends.
MAX_MESSAGE_BYTES = 1024 * 1024
EVENTS_PATH = "/api/v1/events"
#: A websocket handshake's headers, to read the JSON reason of a refused one.
UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "am9idHJpby1yZWZ1c2FsIQ==",
}


class EventFollow:
    """What both clients do with the event stream, without the I/O.

    It builds the query (filters, ``since`` = the last id seen), reads each
    message (``stream.ready`` is kept to itself, the rest are yielded) and
    decides after a disconnection whether and when to connect again: slow
    consumer drops (4001), a node stopping (1001) and lost connections are
    resumed from the last id with a growing delay; refusals are raised.
    """

    def __init__(
        self,
        kind: str | Iterable[str] | None,
        type: str | Iterable[str] | None,
        job_id: str | Iterable[str] | None,
        node: str | Iterable[str] | None,
        since: str | None,
        reconnect: bool,
    ) -> None:
        self.filters: dict[str, str] = {}
        for name, value in (("kind", kind), ("type", type), ("job_id", job_id), ("node", node)):
            if value:
                self.filters[name] = value if isinstance(value, str) else ",".join(value)
        self.last = since
        self.reconnect = reconnect
        self.delay = 0.1
        #: The node's ``stream.ready`` message of the current connection.
        self.ready: dict[str, Any] | None = None

    def params(self) -> dict[str, str]:
        params = dict(self.filters, lines="true")
        if self.last:
            params["since"] = self.last
        return params

    def message(self, text: str) -> list[dict[str, Any]]:
        """The events of one message (``lines=true``: one JSON object a line)."""
        out = []
        for line in text.split("\n"):
            try:
                event = json.loads(line)
            except ValueError:
                raise JobtrioError("the event stream sent a message that is not JSON") from None
            if not isinstance(event, dict):
                raise JobtrioError("the event stream sent a message that is not a JSON object")
            if event.get("kind") == "stream.ready":
                self.ready = event
                self.delay = 0.1
                continue
            if isinstance(event.get("id"), str):
                self.last = event["id"]
            out.append(event)
        return out

    def refused(self, response: httpx.Response) -> JobtrioError:
        """The handshake's refusal (its body already read) as the client's exception."""
        return error_from_response(response)

    def closed(self, url: str, exc: Exception) -> float:
        """Seconds to wait before connecting again; raises when that would not help."""
        if isinstance(exc, WebSocketDisconnect):
            if exc.code == _TOO_BIG_CLOSE:
                # the same message would come again on resuming: say what to change
                raise ConnectionFailed(
                    f"the event stream of {url} sent a message larger than the "
                    f"{MAX_MESSAGE_BYTES} bytes this client accepts (close 1009); "
                    "narrow the stream with filters (kind, type, job_id, node)",
                    code="message_too_big",
                ) from None
            if exc.code in _FINAL_CLOSES or not self.reconnect:
                raise ConnectionFailed(
                    f"the event stream of {url} closed ({exc.code}): {exc.reason or 'no reason'}",
                    code="stream_closed",
                ) from None
        elif not self.reconnect:
            raise ConnectionFailed(f"the event stream of {url} was lost: {exc}") from None
        delay, self.delay = self.delay, min(self.delay * 2, 5.0)
        return delay
