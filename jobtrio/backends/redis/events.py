"""The cluster's event log on a capped Redis Stream (``{prefix}:events``).

Every node appends its own events; every node follows the one stream, so a
client connected to any node sees the whole cluster's events, in the one
order Redis gave them. The stream is capped with ``XTRIM MAXLEN ~ n`` after
each batch's ``XADD``s, in the one script (Redis trims whole macro nodes, so
it holds at least ``n`` and a little more).

Appends go as one script call per batch over the node's Redis connection
(the same trio connections the Broker's scripts use: one round trip for
hundreds of events). Reads use redis-py's client: ``XRANGE`` for history,
``XREAD BLOCK`` to follow, the latter in a thread of its own so that a
blocked read never holds one of the Broker's connection slots.

Whether a resume id was trimmed away is read from ``XINFO STREAM``: once
the stream has lost entries (``entries-added`` above ``length``; always, on
a Redis older than 7, which keeps no such count), any id older than the first
entry counts as trimmed (trimming does not move ``max-deleted-entry-id``,
which only ``XDEL`` sets). The id of the newest entry trimmed is not kept by
Redis: a resume from exactly that id is reported as a gap it is not.

The stream key carries the same hash tag as the Broker's keys, so it lives
on the same Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import trio

from ...eventlog import ZERO_ID, EventId, EventLog, LogEntry, format_id
from ..base import BackendUnavailable

T = TypeVar("T")

#: XADD each event, then trim once, approximately, in the same script (no reader sees the
#: stream between the two): an ``XADD MAXLEN ~`` each cost Redis 0.6 us more an event and
#: left the stream as long. ARGV[1] is the cap, the rest the events.
_APPEND = """
local key, cap = KEYS[1], ARGV[1]
for i = 2, #ARGV do
  redis.call('XADD', key, '*', 'e', ARGV[i])
end
redis.call('XTRIM', key, 'MAXLEN', '~', cap)
return #ARGV - 1
"""

#: How long one blocking read waits before it returns empty (well under the socket timeout).
BLOCK_MS = 1000


def _parse_id(raw: bytes | str) -> EventId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _entries(raw: list[Any]) -> list[LogEntry]:
    out = []
    for entry_id, fields in raw:
        body = fields.get(b"e") if b"e" in fields else fields.get("e")
        if body is None:
            continue  # not one of ours
        out.append(
            LogEntry(_parse_id(entry_id), body.decode() if isinstance(body, bytes) else body)
        )
    return out


class RedisEventLog(EventLog):
    scope = "cluster"

    def __init__(self, connection: Any, prefix: str, maxlen: int) -> None:
        """``connection``: the Broker's (its ``client``, ``run`` and ``script``)."""
        super().__init__(maxlen)
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"redis key prefix {prefix!r} must be non-empty and without braces")
        self.key = "{" + prefix + "}:events"
        self._connection = connection
        self._client: redis.Redis = connection.client
        self._append = self._client.register_script(_APPEND)

    async def _run(self, fn: Callable[[], T], *, blocking: bool = False) -> T:
        try:
            if blocking:
                # not through the connection's limiter: a read that waits a second for
                # news must not take a slot the Broker's claims need
                return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
            return await self._connection.run(fn)  # type: ignore[no-any-return]
        except (redis.RedisError, OSError) as exc:
            if isinstance(exc, redis.ResponseError):
                raise
            raise BackendUnavailable("redis", str(exc) or type(exc).__name__) from exc

    async def append(self, bodies: Sequence[str]) -> None:
        if bodies:
            await self._connection.script(self._append, [self.key], [self.maxlen, *bodies])

    async def read_after(self, after: EventId, count: int) -> list[LogEntry]:
        low = "(" + format_id(after)
        raw = await self._run(lambda: self._client.xrange(self.key, min=low, count=count))
        return _entries(raw)

    async def wait_after(self, after: EventId, count: int, timeout: float) -> list[LogEntry]:
        block = max(1, min(BLOCK_MS, int(timeout * 1000)))
        reply = await self._run(
            lambda: self._client.xread({self.key: format_id(after)}, count=count, block=block),
            blocking=True,
        )
        if not reply:
            return []
        return _entries(reply[0][1])

    async def last_id(self) -> EventId:
        raw = await self._run(lambda: self._client.xrevrange(self.key, count=1))
        return _parse_id(raw[0][0]) if raw else ZERO_ID

    async def lost_after(self, since: EventId) -> EventId | None:
        try:
            info = await self._run(lambda: self._client.xinfo_stream(self.key))
        except redis.ResponseError:
            return None  # no stream yet: nothing was ever trimmed
        deleted = info.get("max-deleted-entry-id")
        gone = _parse_id(deleted) if deleted is not None else ZERO_ID
        first = info.get("first-entry")
        added = info.get("entries-added")
        # Trimming (XTRIM, XADD MAXLEN) does not move max-deleted-entry-id (only XDEL
        # does), and Redis < 7 has neither field: once anything was removed, or when
        # that cannot be told, everything before the first entry may be gone, and the
        # entry just before the first is the newest that may be
        if first is not None and (added is None or int(added) > int(info.get("length", 0))):
            first_id = _parse_id(first[0])
            before = (first_id[0], first_id[1] - 1) if first_id[1] else (first_id[0] - 1, 2**63 - 1)
            gone = max(gone, before)
        return gone if gone > since else None
