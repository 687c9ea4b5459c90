"""``/api/v1/events``: the live event stream over a websocket.

The handshake is refused with the API's usual JSON error (HTTP 400) when a
filter or ``since`` is malformed, and with 503 when the node keeps no event
log (``EVENT_STREAM_MAXLEN=0``). After it, every message is one JSON
object: first ``{"kind": "stream.ready", ...}`` (what the stream covers),
then, when resuming, a ``stream.gap`` message if events after ``since`` are
no longer kept, the kept history after ``since``, and the live events, each
with its ``id`` (pass the last one as ``since`` to resume). With
``lines=true`` a message may carry several events, one JSON object a line:
a node sends tens of thousands of events a second, and each websocket
message costs the node more than the event itself.

A consumer that falls ``EventStream.consumer_buffer`` events behind is
closed with code 4001 (``SLOW_CONSUMER_CLOSE``) and a reason naming the id to
resume from; the node never waits for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio
from quart import Blueprint, current_app, websocket

from ..actors.node import Node
from ..backends.base import BackendUnavailable
from ..eventlog import EventIdError, format_id
from ..eventstream import (
    SLOW_CONSUMER_CLOSE,
    ConsumerDropped,
    EventFilter,
    EventId,
    EventStream,
    FilterError,
    Subscription,
    parse_since,
)
from .auth import Role, owner_scope, require
from .context import current_node
from .errors import ApiError, BadRequest
from .parsing import parse_bool, reject_unknown

log = logging.getLogger("jobtrio.api.events")

bp = Blueprint("events", __name__)

#: Query parameters the route takes (``token``: the credentials of a browser, which cannot
#: set headers on a websocket; the authorizer reads it).
PARAMETERS = ("kind", "type", "job_id", "node", "since", "lines", "token")
#: app.extensions key of the open streams per client address.
OPEN_STREAMS_KEY = "jobtrio.open_streams"
#: Most events in one message with ``lines=true``.
LINES_PER_MESSAGE = 500
#: Most characters of events in one ``lines=true`` message (at most 4 bytes each in UTF-8,
#: so 512 KiB), the first event always going out whatever its size. Why a bound: a
#: client must say the largest message it takes (httpx-ws 0.10 closes with 1009 past
#: it) and reads that much from its socket at once, so an unbounded message would make
#: every client hold megabytes to be safe. 500 ordinary job events (about 250
#: characters each) fit; 500 carrying 4,096-character errors go out in about 30 messages.
#: One event is at most about 5,000 characters (a type of 200, an error of 4,096), so a
#: message is under 540 KB; the clients accept 1 MiB (jobtrio/client/event_follow.py).
LINES_MESSAGE_CHARS = 128 * 1024
#: Seconds a close handshake may take with a client that stopped reading.
CLOSE_TIMEOUT = 2.0
#: Close code when the log cannot be read (RFC 6455 1011, "internal error"); reconnect later.
UNAVAILABLE_CLOSE = 1011
#: Seconds one message may take to leave; longer, and the client is taken as gone.
SEND_TIMEOUT = 30.0


@bp.websocket("/api/v1/events")
@require(Role.WORKER)
async def events() -> None:
    node = current_node()
    stream = node.event_stream
    args = websocket.args
    reject_unknown(args, PARAMETERS)
    for name in args:
        if len(args.getlist(name)) > 1:
            raise BadRequest(
                "invalid_parameter", f"give {name} once (separate values with commas)", name
            )
    lines = parse_bool(args, "lines")
    try:
        filter = EventFilter.parse(args)
    except FilterError as exc:
        raise BadRequest("invalid_parameter", str(exc), exc.field) from None
    scope = owner_scope()
    if scope is not None:
        filter = dataclasses.replace(filter, owner=scope)
    try:
        since = parse_since(args.get("since"))
    except EventIdError as exc:
        raise BadRequest("invalid_parameter", f"since: {exc}", "since") from None
    if not stream.enabled:
        raise ApiError(
            503,
            "events_disabled",
            "this node keeps no event stream (EVENT_STREAM_MAXLEN=0)",
        )
    with _one_more_connection(node.settings.websockets_per_client):
        await _stream(node, stream, filter, since, lines)


@contextmanager
def _one_more_connection(limit: int) -> Iterator[None]:
    """Count the client address's open streams; refuse (429) one past ``limit``.

    Each stream holds a subscription and a buffer on the node, so one client
    opening thousands would take the node's memory; a browser tab needs one.
    """
    counts: Counter[str] = current_app.extensions.setdefault(OPEN_STREAMS_KEY, Counter())
    address = websocket.remote_addr or "unknown"
    if counts[address] >= limit:
        raise ApiError(
            429,
            "too_many_connections",
            f"this address has {limit} event streams open already (WEBSOCKETS_PER_CLIENT); "
            "close one first",
            headers={"Retry-After": "1"},
        )
    counts[address] += 1
    try:
        yield
    finally:
        counts[address] -= 1
        if counts[address] <= 0:
            del counts[address]


async def _stream(
    node: Node, stream: EventStream, filter: EventFilter, since: EventId | None, lines: bool
) -> None:
    async with stream.subscribe(filter) as sub:
        await websocket.accept()
        await websocket.send(
            _dumps(
                {
                    "kind": "stream.ready",
                    "node": node.node_id,
                    "scope": stream.scope,
                    "keeps": stream.maxlen,
                    "since": None if since is None else format_id(since),
                    "filters": filter.describe(),
                }
            )
        )
        try:
            if since is not None:
                gap = await sub.gap(since)
                if gap is not None:
                    await websocket.send(_dumps(gap))
                async for batch in sub.replay(since):
                    await _send(sub, batch, lines)
            while True:
                await _send(sub, await sub.take(), lines)
        except ConsumerDropped as exc:
            if exc.code == SLOW_CONSUMER_CLOSE:
                reason = f"too slow; resume with since={format_id(sub.last)}"
            else:
                reason = f"node stopping; resume with since={format_id(sub.last)}"
            with trio.move_on_after(CLOSE_TIMEOUT):
                await websocket.close(exc.code, reason)
        except _Stuck:
            log.warning("an event-stream consumer stopped reading; connection abandoned")
        except BackendUnavailable as exc:
            # the log (Redis) went away while replaying: the client resumes when it is back
            log.warning("event log unavailable during a replay: %s", exc)
            with trio.move_on_after(CLOSE_TIMEOUT):
                await websocket.close(
                    UNAVAILABLE_CLOSE,
                    f"event log unavailable; resume with since={format_id(sub.last)}",
                )


class _Stuck(Exception):
    """One message could not be sent within SEND_TIMEOUT: the client stopped reading."""


async def _send(sub: Subscription, batch: list[str], lines: bool) -> None:
    """Send in order, one event a message (or up to LINES_PER_MESSAGE lines with ``lines``);
    stop as soon as the follower dropped this consumer."""
    if lines:
        batch = list(line_messages(batch))
    for text in batch:
        if sub.dropped is not None:
            raise ConsumerDropped(sub.dropped, sub.close_code)
        with trio.move_on_after(SEND_TIMEOUT) as scope:
            await websocket.send(text)
        if scope.cancelled_caught:
            raise _Stuck


def line_messages(events: list[str]) -> Iterator[str]:
    """Join events into ``lines=true`` messages in order: each of at most
    LINES_PER_MESSAGE events and LINES_MESSAGE_CHARS characters (newlines included),
    except that a message always takes at least one event."""
    start = 0
    size = 0
    for i, text in enumerate(events):
        grown = size + len(text) + (1 if i > start else 0)
        if i > start and (i - start >= LINES_PER_MESSAGE or grown > LINES_MESSAGE_CHARS):
            yield "\n".join(events[start:i])
            start, size = i, len(text)
        else:
            size = grown
    if start < len(events):
        yield "\n".join(events[start:])


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
