"""The node's event stream: the bus's events into the log, the log out to consumers.

Two halves, both in the node's nursery:

- the *recorder of events* subscribes to the node's ``EventBus``, turns each
  event into its public shape (``normalize``), counts it in the metrics and
  appends it to the ``EventLog`` in batches. It never waits on the log: a
  log that is down (Redis restarting) makes events queue here, up to
  ``pending_limit``; past that they are counted as lost and a
  ``stream.lost`` event says so once the log is back. It is one task that
  takes the bus's events right before each append: while it waits to append
  (``_hold``), the bus's job events wait in its channel without waking it
  (``EventBus.want_wake``), so a drain wakes it about once an append instead
  of once a deal and once a finish (their metrics are counted then too, at
  most the wait later);
- the *follower* runs while at least one consumer is connected: it reads the
  log from where it is (one reader per node whatever the number of
  consumers) and offers each entry to every consumer whose filter matches.

A consumer is a bounded buffer. Offering never blocks: a consumer whose
buffer is full is dropped on the spot (``SLOW_CONSUMER_CLOSE``), so a
consumer that stops reading costs the node one buffer of memory and never a
wait, and the others go on. A consumer that comes back with the last id it
saw resumes where it was: first the log's history after that id, then the
live entries, each delivered once (``Subscription.replay`` and ``take``
skip anything at or before the last id sent).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .backends.base import BackendUnavailable
from .backoff import Backoff
from .eventlog import ZERO_ID, EventId, EventLog, LogEntry, format_id, parse_id
from .events import Item, JobEvents
from .jobs import Job, iso_text

if TYPE_CHECKING:
    from .events import EventBus
    from .metrics import NodeMetrics

log = logging.getLogger("jobtrio.eventstream")

#: Every kind of event the stream carries, with what it means (docs and filters use this).
KINDS: dict[str, str] = {
    "job.submitted": "a job was accepted (by the node that took the request)",
    "job.started": "an attempt started (on the node that runs it)",
    "job.retrying": "an attempt failed or timed out; the job will run again after its delay",
    "job.completed": "an attempt succeeded",
    "job.failed": (
        "retries exhausted (or a job it depends on failed): the job is in the dead letter"
    ),
    "job.cancelled": "a job was cancelled",
    "job.retried": "a failed or cancelled job was sent to run again by hand",
    "job.lease_lost": "a node abandoned an attempt because its lease was gone",
    "job.released": (
        "every job a waiting job depends on completed (or ended, with "
        "on_dependency_failure run): it is due now"
    ),
    "job.progress": (
        "a running attempt reported progress (field: progress, with fraction, message, at, "
        "attempt); at most one a job per node every 0.25 s"
    ),
    "job.lease_expired": (
        "the leader found an expired lease and requeued the job (status failed: poisoned)"
    ),
    "leader.changed": "a node saw a new leader (fields: leader, term, epoch)",
    "leader.fenced": "a leader's writes were refused: a newer epoch exists",
    "member.up": "a member joined or came back (fields: member, address)",
    "member.suspect": "a member stopped answering probes and is suspected",
    "member.down": "a member was declared dead, or left (field: left)",
    "backend.down": "the broker or the store stopped answering (fields: backend, name, error)",
    "backend.up": "the broker or the store answers again",
    "schedule.fired": "a periodic job's tick submitted its job",
    "schedule.saved": "a schedule was created or replaced",
    "schedule.deleted": "a schedule was deleted",
    "jobs.reconciled": "the leader re-enqueued jobs the broker had lost",
    "actor.restarted": "an actor of the node crashed and was restarted",
    "node.stopping": "a node began its graceful stop",
    "stream.lost": "a node could not record some of its events (field: lost)",
}
PREFIXES = frozenset(kind.partition(".")[0] for kind in KINDS)

#: Close code for a consumer that fell too far behind (an application code, RFC 6455 4000-4999).
SLOW_CONSUMER_CLOSE = 4001
#: Events a consumer may have waiting before it is dropped.
DEFAULT_CONSUMER_BUFFER = 10_000
#: Events waiting for the log (while it is down) before new ones are counted as lost.
DEFAULT_PENDING_LIMIT = 100_000
#: Events the bus holds for the recorder between two of its turns (it takes them in batches).
BUS_BUFFER = 100_000
#: Most seconds between two tries to append to a log that is down.
RETRY_MAX = 1.0
#: Entries read from the log in one call.
READ_BATCH = 1000
#: Longest the recorder holds events for more to share their append, while events flow
#: at ``APPEND_LINGER_RATE`` or more (a drain publishes two a job: with jobs that await
#: I/O, the events an append's round trip gathered, a dozen, went in the next one: one
#: Redis script call a dozen events). It appends at once at ``APPEND_TARGET`` events and
#: from ``node.stopping`` on (the node cancels this actor once stopped); fewer events
#: wait for company (``APPEND_COMPANY_WAIT``). As short as the finisher's linger
#: (``FINISH_LINGER``).
APPEND_LINGER = 0.002
#: Events a second (measured over ``APPEND_RATE_INTERVAL``) from which the recorder
#: lingers: at that rate a linger gathers four or more.
APPEND_LINGER_RATE = 2000.0
#: Seconds over which the event rate is measured.
APPEND_RATE_INTERVAL = 0.05
#: Events a lingering recorder waits for before it appends.
APPEND_TARGET = 256
#: Longest the recorder holds events below ``APPEND_LINGER_RATE`` for company: the
#: node's next Broker call (the finisher's, ``EventBus.company``), made in the same
#: scheduling round, so that both share one send to Redis and one wake-up of it. At a
#: few hundred single jobs a second, a job's ``job.completed`` was appended alone after
#: its finish (a third of the node's round trips); now it goes with the next job's
#: finish. A node with no job ending appends after this wait.
APPEND_COMPANY_WAIT = 0.005
#: Longest an append from ``node.stopping`` on may hold up the node's stop. Those appends
#: are shielded from the stop's cancel, which came while one was in flight and lost its
#: events (3-20 of a 3,000-job drain's under valgrind), and what is left when the cancel
#: comes is appended then, within this bound in all: the stop waits twice this at most
#: (on Redis, a call on the wire is never abandoned: up to its ``socket_timeout`` each).
#: Before ``node.stopping`` nothing is shielded: a cancelled append may have reached the
#: log, and appending its events again would repeat them.
STOP_APPEND_TIMEOUT = 1.0

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def job_fields(job: Job) -> dict[str, Any]:
    """What an event says about a job: enough to show it, never its payload or result."""
    return job.event_fields()


_JOB_KEYS = (
    "type", "status", "priority", "retry_count", "max_retries", "worker_id", "error", "owner",
)  # fmt: skip


def _job_view(job: Mapping[str, Any]) -> dict[str, Any]:
    """``job_fields`` of an event, also from a full ``Job.to_dict()`` (some publishers send one)."""
    if "job_id" in job:
        return dict(job)
    view = {"job_id": job.get("id")}
    for key in _JOB_KEYS:
        view[key] = job.get(key)
    attempts = job.get("attempts")
    view["attempt"] = len(attempts) if isinstance(attempts, list) else None
    return view


def normalize(event: Mapping[str, Any]) -> dict[str, Any]:
    """A bus event (``type``, ``node_id``, ``at``, data) in the stream's shape (without id).

    Run for every event the node records (two or three a job): the usual shapes (a
    float ``at``, a dict of ``job_fields``) are told by their exact type first, before
    the ABC checks that cost more than the rest."""
    at = event.get("at")
    if type(at) is float or isinstance(at, int | float):
        at = iso_text(at)
    out: dict[str, Any] = {"kind": event.get("type"), "at": at, "node": event.get("node_id")}
    for key, value in event.items():
        if key in _ENVELOPE:
            continue
        if key == "job" and (type(value) is dict or isinstance(value, Mapping)):
            out.update(value if "job_id" in value else _job_view(value))
        else:
            out[key] = value
    return out


_ENVELOPE = frozenset({"type", "node_id", "at"})


def encode(event: Mapping[str, Any]) -> str:
    """An event's stored text. orjson writes what the stdlib encoder would (UTF-8 text, no
    spaces) four times faster (0.7 against 3.3 ms for the 1000 events of a batch); what
    it cannot write as the stdlib would (see ``_refuse``) is left to the stdlib. Floats
    differ in spelling only (``1e16``), and NaN is written null, not the stdlib's NaN."""
    try:
        return orjson.dumps(event, default=_refuse, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return _stdlib_encode(event)


def _stdlib_encode(value: Any) -> str:
    """What orjson left to the stdlib, as valid text. orjson refuses a lone UTF-16
    surrogate (no UTF-8 has one) and the stdlib writes it as it is: Redis's wire then
    refused the whole batch, the recorder of events crashed on it, and again at every
    restart, the node's events stopping for good. So it becomes U+FFFD, logged."""
    text = _ENCODER.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            log.warning("an event holds a lone UTF-16 surrogate, kept as U+FFFD: %a", text[:200])
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _refuse(value: Any) -> Any:
    raise TypeError(f"left to the stdlib encoder: {type(value).__name__}")


def encode_jobs(batch: JobEvents, limit: int | None = None) -> list[str]:
    """``encode(normalize(event))`` of each of ``batch.events()`` (the first ``limit``).

    The envelope (kind, at, node) is written once a time and each job's fields
    spliced after it: 0.34 against 2.0 us an event (timeit, 100 jobs a batch)."""
    parts = _ENVELOPE_PARTS.get((batch.kind, batch.node_id))
    if parts is None:
        if len(_ENVELOPE_PARTS) >= 64:
            _ENVELOPE_PARTS.clear()
        parts = _ENVELOPE_PARTS[batch.kind, batch.node_id] = (
            encode({"kind": batch.kind})[:-1] + ',"at":',
            ',"node":' + encode(batch.node_id) + ",",  # type: ignore[arg-type]
        )
    kind_part, node_part = parts
    out: list[str] = []
    append, dumps, options = out.append, orjson.dumps, _ORJSON_OPTIONS
    last_at: Any = _NO_TIME
    prefix = ""
    jobs = batch.jobs if limit is None else batch.jobs[:limit]
    for fields, at in zip(jobs, batch.ats, strict=False):
        if at != last_at or type(at) is not type(last_at):
            # each deal of one job has its own time: this runs about once an event
            last_at = at
            if type(at) is float or isinstance(at, _NUMBERS):
                # digits, '-', ':', '.', 'T', 'Z': no escapes
                prefix = f'{kind_part}"{iso_text(at)}"{node_part}'
            else:
                prefix = kind_part + encode(at) + node_part  # type: ignore[arg-type]
        if "job_id" not in fields:
            fields = _job_view(fields)
        try:
            body = dumps(fields, default=_refuse, option=options).decode()
        except TypeError:
            body = _stdlib_encode(fields)
        # the fields' object without its "{", after the envelope's without its "}": the
        # "{" replaced by the envelope, one new text where a slice and a join made two
        append(body.replace("{", prefix, 1) if len(body) > 2 else prefix[:-1] + "}")
    return out


_NO_TIME = object()
_NUMBERS = (int, float)
#: ``encode_jobs``'s envelope texts by (kind, node): a drain's deals of one job each
#: took a batch each, and encoding these two cost as much as the job's own fields.
_ENVELOPE_PARTS: dict[tuple[str, str], tuple[str, str]] = {}


def with_id(event_id: EventId, body: str) -> str:
    """The message a consumer receives: the stored body with its id first."""
    return f'{{"id":"{format_id(event_id)}",{body[1:]}'


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _values(args: Mapping[str, str], name: str) -> list[str]:
    raw = args.get(name)
    if raw is None:
        return []
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values:
        raise FilterError(name, f"{name} is empty; give one or more values separated by commas")
    return values


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a consumer wants; every given criterion must match (values: any of them)."""

    kinds: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    #: Set by the server, never from the query: a ``user``'s stream carries only the events
    #: of its own jobs (an event naming a job without this owner is left out) and the
    #: events that name no job.
    owner: str | None = None

    FIELDS = ("kind", "type", "job_id", "node")

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> EventFilter:
        """From a query string: ``kind=job.completed,leader`` (a kind or a family), ``type``,
        ``job_id`` and ``node`` (comma-separated). ``FilterError`` names a bad value."""
        kinds, prefixes = set(), set()
        for value in _values(args, "kind"):
            name = value.lower()
            family = name[:-2] if name.endswith(".*") else name
            if name in KINDS:
                kinds.add(name)
            elif family in PREFIXES:
                prefixes.add(family)
            else:
                raise FilterError(
                    "kind",
                    f"unknown event kind {value[:60]!r}; use a kind such as job.completed or a "
                    f"family ({', '.join(sorted(PREFIXES))})",
                )
        job_ids = set()
        for value in _values(args, "job_id"):
            job_id = value.upper()
            if len(job_id) != 26 or not job_id.isalnum():
                raise FilterError("job_id", f"{value[:60]!r} is not a job id")
            job_ids.add(job_id)
        return cls(
            frozenset(kinds),
            frozenset(prefixes),
            frozenset(_values(args, "type")),
            frozenset(job_ids),
            frozenset(_values(args, "node")),
        )

    @property
    def everything(self) -> bool:
        return not (
            self.kinds or self.prefixes or self.types or self.job_ids or self.nodes or self.owner
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("kind")
        if kind == "stream.lost":
            return True  # a consumer must always hear that something is missing
        if self.kinds or self.prefixes:
            if kind not in self.kinds and str(kind).partition(".")[0] not in self.prefixes:
                return False
        if self.types and event.get("type") not in self.types:
            return False
        if self.job_ids and event.get("job_id") not in self.job_ids:
            return False
        if self.owner is not None and "job_id" in event and event.get("owner") != self.owner:
            return False
        return not (self.nodes and event.get("node") not in self.nodes)

    def describe(self) -> dict[str, list[str]]:
        out = {
            "kind": sorted(self.kinds) + sorted(p + ".*" for p in self.prefixes),
            "type": sorted(self.types),
            "job_id": sorted(self.job_ids),
            "node": sorted(self.nodes),
        }
        if self.owner is not None:
            out["owner"] = [self.owner]
        return out


#: Close code when the node stops (RFC 6455 "going away"): reconnect, to another node if need be.
GOING_AWAY_CLOSE = 1001


class ConsumerDropped(Exception):
    """The stream ended for this consumer: it fell too far behind, or the node is stopping."""

    def __init__(self, reason: str, code: int = SLOW_CONSUMER_CLOSE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Subscription:
    """One consumer: a bounded buffer the follower fills and the consumer drains."""

    def __init__(self, stream: EventStream, filter: EventFilter, limit: int) -> None:
        self._stream = stream
        self.filter = filter
        self.limit = limit
        self._buffer: deque[tuple[EventId, str]] = deque()
        self._ready = trio.Event()
        #: Why it was dropped (None while it is served), and the close code that says so.
        self.dropped: str | None = None
        self.close_code = SLOW_CONSUMER_CLOSE
        #: The id of the last event handed to the consumer.
        self.last: EventId = ZERO_ID

    def offer(self, entry_id: EventId, text: str) -> None:
        """Called by the follower; never blocks. Drops the consumer when its buffer is full."""
        if self.dropped is not None:
            return
        if len(self._buffer) >= self.limit:
            self.dropped = (
                f"too slow: {self.limit} events waiting to be sent; reconnect with "
                f"since={format_id(self.last)} to resume"
            )
            self._buffer.clear()
            self._stream._drop(self)
            self._ready.set()
            return
        self._buffer.append((entry_id, text))
        self._ready.set()

    def end(self, reason: str, code: int) -> None:
        """Stop serving this consumer (the node is stopping)."""
        if self.dropped is None:
            self.dropped, self.close_code = reason, code
            self._ready.set()

    async def take(self) -> list[str]:
        """The next messages, oldest first (waits for one); ``ConsumerDropped`` if dropped."""
        while True:
            if self.dropped is not None:
                raise ConsumerDropped(self.dropped, self.close_code)
            out = []
            last = self.last
            while self._buffer:
                entry_id, text = self._buffer.popleft()
                if entry_id > last:  # already sent from the history
                    out.append(text)
                    last = entry_id
            self.last = last
            if out:
                return out
            self._ready = trio.Event()
            await self._ready.wait()

    async def gap(self, since: EventId) -> dict[str, Any] | None:
        """The message for a resume id whose successors were (partly) thrown away, if so."""
        lost = await self._stream.lost_after(since)
        if lost is None:
            return None
        return {
            "kind": "stream.gap",
            "since": format_id(since),
            "lost_upto": format_id(lost),
            "message": (
                f"events after {format_id(since)} up to {format_id(lost)} are no longer kept "
                f"(the stream keeps the newest {self._stream.maxlen} events, and a node's own "
                "stream starts empty when it starts); the stream resumes with the oldest event "
                "still kept: reload what you show from the REST API"
            ),
        }

    async def replay(self, since: EventId) -> AsyncIterator[list[str]]:
        """The history after ``since`` that matches, in batches; then ``take`` goes on live."""
        position = since
        self.last = max(self.last, since)
        while True:
            entries = await self._stream.read_after(position, READ_BATCH)
            if not entries:
                return
            position = entries[-1].id
            everything = self.filter.everything
            out = [
                with_id(e.id, e.body)
                for e in entries
                if e.id > self.last and (everything or self.filter.matches(json.loads(e.body)))
            ]
            self.last = max(self.last, position)
            if out:
                yield out


class EventStream:
    """Records the node's events in the log and serves them to subscriptions (see module doc)."""

    def __init__(
        self,
        bus: EventBus,
        event_log: EventLog | None,
        metrics: NodeMetrics,
        clock: Callable[[], float],
        *,
        consumer_buffer: int = DEFAULT_CONSUMER_BUFFER,
        pending_limit: int = DEFAULT_PENDING_LIMIT,
    ) -> None:
        self._bus = bus
        self.log = event_log
        self._metrics = metrics
        self._clock = clock
        self.consumer_buffer = consumer_buffer
        self._pending_limit = pending_limit
        self._pending: deque[str] = deque()
        #: The node said it is stopping (``node.stopping``): events are appended at once.
        self._stopping = False
        self._subscriptions: set[Subscription] = set()
        self._follow_wanted = trio.Event()
        self._follow_started: trio.Event | None = None
        self._bus_dropped = 0
        self.lost = 0
        self.recorded = 0
        self.log_healthy = True
        #: The event rate: recorded events a second, over the window begun at ``_rate_since``.
        self._rate = 0.0
        self._rate_since = 0.0
        self._rate_recorded = 0

    # -- facts for the route and the dashboard ---------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.log is not None

    @property
    def scope(self) -> str:
        return self.log.scope if self.log is not None else "none"

    @property
    def maxlen(self) -> int:
        return self.log.maxlen if self.log is not None else 0

    @property
    def consumers(self) -> int:
        return len(self._subscriptions)

    async def read_after(self, after: EventId, count: int) -> list[LogEntry]:
        assert self.log is not None
        return await self.log.read_after(after, count)

    async def lost_after(self, since: EventId) -> EventId | None:
        assert self.log is not None
        return await self.log.lost_after(since)

    # -- subscriptions -------------------------------------------------------------------
    @asynccontextmanager
    async def subscribe(self, filter: EventFilter) -> AsyncIterator[Subscription]:
        """A consumer, live from now on (``replay`` first to resume from an id)."""
        if self.log is None:
            raise RuntimeError("the event stream is disabled (EVENT_STREAM_MAXLEN=0)")
        sub = Subscription(self, filter, self.consumer_buffer)
        self._subscriptions.add(sub)
        self._metrics.stream_consumers.set(len(self._subscriptions))
        try:
            # the follower's starting point must be fixed before a replay reads the history,
            # or entries appended in between would be in neither
            started = self._follow_started
            if started is None:
                started = self._follow_started = trio.Event()
                self._follow_wanted.set()
            await started.wait()
            yield sub
        finally:
            self._subscriptions.discard(sub)
            self._metrics.stream_consumers.set(len(self._subscriptions))

    def _drop(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        self._metrics.stream_consumers.set(len(self._subscriptions))
        self._metrics.stream_dropped.inc()
        log.warning("dropped a slow event-stream consumer: %s", sub.dropped)

    # -- the actor ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            with self._bus.subscribe(buffer=BUS_BUFFER, batches=True) as events:
                if self.log is None:
                    await self._count(events)
                else:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._follow)
                        await self._record(events)
        finally:
            for sub in list(self._subscriptions):
                sub.end(
                    f"the node is stopping; reconnect with since={format_id(sub.last)}",
                    GOING_AWAY_CLOSE,
                )

    async def _count(self, events: trio.MemoryReceiveChannel[Item]) -> None:
        """Without a log: count each event in the metrics as it comes."""
        async for first in events:
            self._take(events, first)

    def _take(self, events: trio.MemoryReceiveChannel[Item], first: Item | None = None) -> None:
        """Take what the bus handed over (``first``, then whatever waits in ``events``):
        count it in the metrics and, with a log, encode it into the pending events
        (those past ``pending_limit`` counted as lost)."""
        batch = [] if first is None else [first]
        receive = events.receive_nowait
        while True:
            try:
                batch.append(receive())
            except trio.WouldBlock:
                break
        if not batch:
            return
        account, account_jobs = self._metrics.account_event, self._metrics.account_jobs
        for item in batch:
            if type(item) is JobEvents:
                item.open = False  # taken: the bus starts a new one
                account_jobs(item.kind, item.jobs)
            else:
                account(item)  # type: ignore[arg-type]
                if item["type"] == "node.stopping":  # type: ignore[index]
                    # the node's actors are cancelled soon after: no more lingering,
                    # or the last events could still be waiting for company then
                    self._stopping = True
        if self.log is None:
            return
        pending = self._pending
        dropped = self._bus.dropped - self._bus_dropped
        if dropped:
            self._bus_dropped += dropped
            self._lose(dropped)
        room = max(self._pending_limit - len(pending), 0)
        lost = 0
        for item in batch:
            if type(item) is JobEvents:
                n = len(item.jobs)
                if n > room:
                    lost += n - room
                    n = room
                if n:
                    pending.extend(encode_jobs(item, n))
                    room -= n
            elif room:
                pending.append(encode(normalize(item)))  # type: ignore[arg-type]
                room -= 1
            else:
                lost += 1
        if lost:
            self._lose(lost)  # the newest are the ones that did not fit

    def _lose(self, n: int) -> None:
        """Say in the log itself that ``n`` events of this node are missing (past the limit)."""
        self.lost += n
        self._metrics.stream_lost.inc(n)
        event = {
            "type": "stream.lost",
            "node_id": self._bus.node_id,
            "at": self._clock(),
            "lost": n,
        }
        self._pending.append(encode(normalize(event)))

    async def _record(self, events: trio.MemoryReceiveChannel[Item]) -> None:
        """Take the bus's events and append them to the log in batches (module doc).

        One task for both: while it holds events for an append (``_hold``) the bus's
        job events wait in ``events`` without waking it (``EventBus.want_wake``), and
        it takes them when its wait ends, right before the append. From
        ``node.stopping`` on, appends are shielded from the stop's cancel, and what
        is left when it comes is appended then (``STOP_APPEND_TIMEOUT``)."""
        assert self.log is not None
        try:
            await self._record_until_cancelled(events)
        except trio.Cancelled:
            # taken first: a ``node.stopping`` that came while an append begun before it
            # was in flight (unshielded) is known only once taken
            self._take(events)
            if self._stopping and self.log_healthy:
                with trio.CancelScope(shield=True, deadline=_stop_deadline()):
                    while self._pending and await self._append():
                        pass
            raise

    async def _record_until_cancelled(self, events: trio.MemoryReceiveChannel[Item]) -> None:
        pending, backoff = self._pending, Backoff(0.05, RETRY_MAX)
        while True:
            self._take(events)
            if not pending:
                self._take(events, await events.receive())
            if len(pending) < APPEND_TARGET and not self._stopping:
                if self._flowing():
                    await self._hold(events, APPEND_LINGER)
                else:
                    await self._hold(events, APPEND_COMPANY_WAIT, company=True)
            appended = False
            if self._stopping:
                with trio.CancelScope(shield=True, deadline=_stop_deadline()) as scope:
                    appended = await self._append()
                if scope.cancelled_caught:
                    self.log_healthy = False  # as good as down: the stop waits no more
                # the stop's cancel, if it came meanwhile, is raised here: what is left
                # goes under the one bound of the handler in ``_record``, not a fresh
                # bound a batch (a slow log and a backlog held the stop without end)
                await trio.lowlevel.checkpoint_if_cancelled()
            else:
                appended = await self._append()
            if appended:
                backoff.reset()
            elif not self.log_healthy:
                await self._hold(events, backoff.next(), early=False)

    async def _append(self) -> bool:
        """Append the oldest pending events (up to ``READ_BATCH``). False if they were not:
        the log is down (``log_healthy`` false, they wait), or it refused them for good."""
        assert self.log is not None
        pending = self._pending
        batch = list(pending) if len(pending) <= READ_BATCH else list(islice(pending, READ_BATCH))
        try:
            await self.log.append(batch)
        except BackendUnavailable as exc:
            if self.log_healthy:
                log.warning("event log unavailable, %d events wait: %s", len(pending), exc)
            self.log_healthy = False
            return False
        except Exception:
            # not an outage: the log refuses this batch (a bug, an error reply), and
            # would refuse it again at every restart of this actor, which then records
            # nothing more. So the batch is let go, counted as lost and said in the log.
            log.exception("event log refused a batch of %d events: they are lost", len(batch))
            _drop_first(pending, len(batch))
            self._lose(len(batch))
            return False
        self.log_healthy = True
        _drop_first(pending, len(batch))
        self.recorded += len(batch)
        self._metrics.stream_events.inc(len(batch))
        return True

    def _flowing(self) -> bool:
        """Whether events come at ``APPEND_LINGER_RATE`` or more (re-measured each interval)."""
        now = trio.current_time()
        elapsed = now - self._rate_since
        if elapsed >= APPEND_RATE_INTERVAL:
            self._rate = (self.recorded - self._rate_recorded) / elapsed
            self._rate_since, self._rate_recorded = now, self.recorded
        return self._rate >= APPEND_LINGER_RATE and not self._stopping

    async def _hold(
        self,
        events: trio.MemoryReceiveChannel[Item],
        seconds: float,
        *,
        company: bool = False,
        early: bool = True,
    ) -> None:
        """Wait up to ``seconds``, taking the bus's events as they come.

        Woken by a plain event (``publish``: rare, and ``node.stopping`` must end the
        wait), by the job events that make ``APPEND_TARGET`` pending, and with
        ``company`` by the node's next Broker call (``EventBus.company``); not by each
        ``publish_jobs``. With ``early`` it returns once ``APPEND_TARGET`` events are
        pending, the node is stopping, or the company came; else (a backoff while the
        log is down) at the end only, the events taken meanwhile all the same."""
        bus, pending = self._bus, self._pending
        deadline = trio.current_time() + seconds
        while True:
            ready = trio.Event()
            bus.want_wake(ready, max(APPEND_TARGET - len(pending), 1))
            if company:
                bus.want_company(ready)
            try:
                with trio.move_on_at(deadline) as scope:
                    await ready.wait()
                came = company and not bus.company_wanted
            finally:
                bus.want_wake(None)
                if company:
                    bus.want_company(None)
            self._take(events)
            if scope.cancelled_caught:
                return
            if early and (came or self._stopping or len(pending) >= APPEND_TARGET):
                return

    async def _follow(self) -> None:
        """While anyone is subscribed: read the log from where it was, offer to each."""
        assert self.log is not None
        backoff = Backoff(0.05, 5.0)
        while True:
            await self._follow_wanted.wait()
            while True:
                try:
                    position = await self.log.last_id()
                    break
                except BackendUnavailable:
                    await trio.sleep(backoff.next())
            assert self._follow_started is not None
            self._follow_started.set()
            while self._subscriptions:
                try:
                    entries = await self.log.wait_after(position, READ_BATCH, 1.0)
                except BackendUnavailable:
                    await trio.sleep(backoff.next())
                    continue
                backoff.reset()
                if entries:
                    position = entries[-1].id
                    self._offer(entries)
            self._follow_wanted = trio.Event()
            self._follow_started = None

    def _offer(self, entries: list[LogEntry]) -> None:
        subs = list(self._subscriptions)
        if not subs:
            return
        need_parse = any(not s.filter.everything for s in subs)
        for entry in entries:
            text = with_id(entry.id, entry.body)
            event = json.loads(entry.body) if need_parse else None
            for sub in subs:
                if event is None or sub.filter.matches(event):
                    sub.offer(entry.id, text)


def _drop_first(pending: deque[str], n: int) -> None:
    """Take the ``n`` oldest of ``pending`` away: all at once when that is all of them
    (an append's batch, two events a job, took them away one Python step each)."""
    if n == len(pending):
        pending.clear()
    else:
        for _ in range(n):
            pending.popleft()


def _stop_deadline() -> float:
    return trio.current_time() + STOP_APPEND_TIMEOUT


def parse_since(text: str | None) -> EventId | None:
    """The ``since`` query parameter (``EventIdError`` names a bad one)."""
    if text is None:
        return None
    return parse_id(text)


__all__ = [
    "KINDS",
    "SLOW_CONSUMER_CLOSE",
    "ConsumerDropped",
    "EventFilter",
    "EventStream",
    "FilterError",
    "Subscription",
    "job_fields",
    "normalize",
    "parse_since",
]
