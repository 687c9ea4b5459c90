"""The job vocabulary: the record every backend stores and every surface shows.

A ``Job`` is a plain dataclass so that the same object travels through the
Broker (the queue), the Store (the record), the actors and the API without
adapters. Timestamps are float Unix seconds inside the process (cheap to
compare, deterministic under a simulated clock) and ISO 8601 strings on the
wire, which is what users of the REST API expect.

What a client may submit, and the new ``Job`` a submission makes, is decided
in ``submission`` (``validate_submission``); this module is the record.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
import operator
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from copy import copy as _shallow_copy
from dataclasses import dataclass, field, fields
from typing import Any

from .jsontext import compact_encoder
from .text import clip

MIN_PRIORITY = 1
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5
#: The queue a job joins when it names none.
DEFAULT_QUEUE = "default"


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Waits for the jobs it depends on (``depends_on``) to complete.
    WAITING = "waiting"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
#: States in which a job waits in the Broker to be claimed (now or later).
WAITING_STATUSES = frozenset(
    {JobStatus.WAITING, JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING}
)


class ValidationError(ValueError):
    """A submission or query was refused; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


# --------------------------------------------------------------------------
# identifiers

#: The ids' alphabet (Crockford base 32): a server-made id is its created_at's milliseconds
#: in its first 10 of these 26 characters (the Redis layout reads the time back).
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]
#: An id is 26 characters of 5 bits (the first one always 0-7), written two at a time.
_TIME_SHIFTS = range(40, -1, -10)  # the time's 10 characters, of the ms alone
_HIGH_SHIFTS = range(50, -1, -10)  # the randomness' first 12 characters, of its bits >> 20
_HIGH_MASK = (1 << 60) - 1
_LOW_MASK = (1 << 20) - 1


class IdGenerator:
    """Time-sortable unique ids (ULID layout: 48-bit ms time + 80 random bits).

    Ids sort by creation time, so "newest first" and cursor paging are an
    index scan on the id. Within one millisecond the random part is
    incremented (monotonic ULID), so ids made by one generator always sort in
    creation order. The random source is injectable: the simulator passes a
    seeded one so that a seed fixes every id.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()
        self._lock = threading.Lock()
        self._last_ms = -1
        #: The last id's random bits: ``_high`` (its first 60) and ``_low`` (its last 20),
        #: and the text of its time and ``_high`` (the id's first 22 characters).
        self._high = 0
        self._low = 0
        self._text = ""

    def new(self, now: float | None = None) -> str:
        ms = int((time.time() if now is None else now) * 1000)
        # the first 10 characters are the time (50 bits, the top two 0), the last 16 the 80
        # random bits; two characters (10 bits) a step. Within a millisecond the random
        # bits only count up, so all but their last 20 bits stay: the text of the time and
        # of those (22 characters) is kept, and an id of a batch writes 4 characters from
        # the last 20 bits alone, kept apart as a small int (measured at load 5: 3.3 us an
        # id with the time's text kept alone, 1.5 with this; the 80-bit arithmetic per id
        # cost 8.7k instructions of callgrind, the small int's 4.0k)
        with self._lock:
            if ms <= self._last_ms:
                low = self._low + 1
                if low <= _LOW_MASK:
                    self._low = low
                    return self._text + _CROCKFORD_PAIRS[low >> 10] + _CROCKFORD_PAIRS[low & 1023]
                ms = self._last_ms
                high = (self._high + 1) & _HIGH_MASK  # 80 bits that overflow start from 0
                low = 0
            else:
                rand = self._rng.getrandbits(80)
                high, low = rand >> 20, rand & _LOW_MASK
                self._last_ms = ms
            pairs = _CROCKFORD_PAIRS
            self._high, self._low = high, low
            self._text = text = "".join(
                [pairs[(ms >> shift) & 1023] for shift in _TIME_SHIFTS]
                + [pairs[(high >> shift) & 1023] for shift in _HIGH_SHIFTS]
            )
        return text + pairs[low >> 10] + pairs[low & 1023]

    def new_many(self, count: int, now: float | None = None) -> list[str]:
        """``[self.new(now) for _ in range(count)]``: a batch's ids.

        After its first id, each id of one time differs from the one before in its last
        20 bits only (``new``), so the rest are made under one lock as the shared text
        and 4 characters each, without a call each (a batch of 1,000: 1.5 -> 0.2 us an
        id, see the commit); past the last of those bits, by ``new``."""
        if count <= 0:
            return []
        made = [self.new(now)]
        with self._lock:
            low = self._low
            last = min(low + count - 1, _LOW_MASK)
            text, pairs = self._text, _CROCKFORD_PAIRS
            made += [text + pairs[n >> 10] + pairs[n & 1023] for n in range(low + 1, last + 1)]
            self._low = last
        while len(made) < count:  # the 20 bits ran out: new() carries into the others
            made.append(self.new(now))
        return made


_default_ids = IdGenerator()


def new_job_id(now: float | None = None) -> str:
    return _default_ids.new(now)


def new_job_ids(count: int, now: float | None = None) -> list[str]:
    """``count`` new job ids, as ``count`` calls of ``new_job_id(now)`` make them."""
    return _default_ids.new_many(count, now)


def new_token() -> str:
    """An unguessable lease token (a backend that takes ``tokens`` may be given another
    source: the simulator passes a seeded one, so that a seed fixes every token)."""
    return os.urandom(12).hex()


def is_job_id(value: Any) -> bool:
    """Whether ``value`` is a job id as this system makes them (26 Crockford characters)."""
    return (
        isinstance(value, str) and len(value) == 26 and all(c in CROCKFORD for c in value.upper())
    )


# --------------------------------------------------------------------------
# time on the wire


#: Times ``to_iso`` wrote lately, and their text: a job's created_at and updated_at are
#: one time when it is accepted, and the jobs of a batch share them (and often their
#: scheduled_at), so an answer of 1000 jobs formats a few times instead of 3000
#: (datetime formatting is ~1.5 us a time). Emptied when full, so it stays small.
#: Read it only with ``.get`` (to skip a call of ``to_iso`` for a time it holds, as
#: the batch answer does); ``to_iso`` alone fills it.
ISO_TEXTS: dict[float, str] = {}
_ISO_TEXTS_MAX = 256


def to_iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    text = ISO_TEXTS.get(ts)
    if text is None:
        text = iso_text(ts)
        if len(ISO_TEXTS) >= _ISO_TEXTS_MAX:
            ISO_TEXTS.clear()
        ISO_TEXTS[ts] = text
    return text


def iso_text(ts: float, _modf: Any = math.modf, _round: Any = round) -> str:
    """``to_iso`` without remembering: for times seen once (an event's), which would
    push the shared times of a batch's jobs out of ``to_iso``'s memory.

    What ``_datetime_text`` writes, with the date and time of day of the last whole
    second remembered: a job's times and its events' fall in few seconds, and the
    datetime round trip cost 2.4 us of a 2.6 us call. The microseconds are rounded
    as ``datetime.fromtimestamp`` rounds them (half to even on ``frac * 1e6``), and
    written as two of ``_DIGITS3``: ``{micros:06d}`` was 1.1k of an event's 26k
    instructions in a drain (an event's time is its own: no cache of texts helps).
    """
    global _last_second
    if not 0.0 <= ts < MAX_TIMESTAMP:
        return _datetime_text(ts)
    frac, whole = _modf(ts)
    micros = _round(frac * 1e6)
    last = _last_second
    if last[0] != whole or micros >= 1_000_000:
        if micros >= 1_000_000:
            micros -= 1_000_000
            whole += 1.0
        if last[0] != whole:
            last = _last_second = (whole, _datetime_text(whole)[:20])
    return f"{last[1]}{_DIGITS3[micros // 1000]}{_DIGITS3[micros % 1000]}Z"


#: "000" to "999", by value: ``iso_text``'s milliseconds and microseconds.
_DIGITS3 = tuple(f"{i:03d}" for i in range(1000))


def _datetime_text(ts: float) -> str:
    dt = _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


#: The whole second ``iso_text`` wrote last, and its ``YYYY-MM-DDTHH:MM:SS.``.
_last_second: tuple[float, str] = (-1.0, "")


#: Latest time a record can hold: 9999-12-31T23:59:59Z, the last second ISO 8601 dates
#: (and Python's datetime, which renders every time on the wire) can write.
MAX_TIMESTAMP = 253402300799.0
#: Longest duration (a job's timeout): ten years, past which a number is a mistake.
MAX_DURATION = 10 * 365 * 86400.0


def check_timestamp(seconds: float, field_name: str, shown: Any = None) -> float:
    """``seconds`` if a record can hold it (1970 to 9999), else ``ValidationError``.

    Validated before anything is stored: a time outside that range was once
    stored and then made every read of the record fail. A number of Unix
    *milliseconds* is the usual mistake, and the message says so.
    """
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIMESTAMP:
        hint = ""
        if math.isfinite(seconds) and 0 <= seconds / 1000 <= MAX_TIMESTAMP:
            hint = (
                f"; this looks like Unix milliseconds: send seconds ({seconds / 1000:.3f}) "
                "or an ISO 8601 time"
            )
        raise ValidationError(
            f"{field_name} {clip(seconds if shown is None else shown)} is out of range: "
            f"use Unix seconds from 0 to {MAX_TIMESTAMP:.0f} "
            f"(1970 to 9999) or an ISO 8601 time{hint}",
            field_name,
            "out_of_range",
        )
    return seconds


def parse_time(value: Any, field_name: str) -> float:
    """Accept an ISO 8601 string (``Z`` or offset; naive means UTC) or Unix seconds,
    from 1970 to 9999 (``check_timestamp``)."""
    kind = type(value)  # the usual two first: a client reads five a job, mostly remembered
    if kind is str:
        seconds = _iso_seconds.get(value)
        if seconds is not None:
            return seconds
    elif kind is float:
        return check_timestamp(value, field_name, value)
    if isinstance(value, bool):
        raise ValidationError(f"{field_name} must be an ISO 8601 time or Unix seconds", field_name)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too big for a float
            seconds = math.inf
        return check_timestamp(seconds, field_name, value)
    if not isinstance(value, str):
        raise ValidationError(f"{field_name} must be an ISO 8601 time or Unix seconds", field_name)
    seconds = _iso_seconds.get(value)
    if seconds is not None:
        return seconds
    seconds = _parse_iso(value, field_name)
    if len(_iso_seconds) >= _ISO_TEXTS_MAX:
        _iso_seconds.clear()
    _iso_seconds[value] = seconds
    return seconds


#: ISO texts ``parse_time`` read lately (valid ones only): the jobs of a batch answer share
#: their created_at, updated_at and often scheduled_at, and the client reads 3000 a batch.
_iso_seconds: dict[str, float] = {}


def _parse_iso(value: str, field_name: str) -> float:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"{field_name} {clip(value)} is not an ISO 8601 time such as 2024-01-01T12:00:00Z",
            field_name,
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    try:
        seconds = dt.timestamp()
    except (OverflowError, ValueError):
        seconds = math.inf
    return check_timestamp(seconds, field_name, value)


# --------------------------------------------------------------------------
# the record


@dataclass(slots=True)
class Attempt:
    """One run of a job: who ran it, when, and how it ended."""

    number: int
    node_id: str
    worker_id: str | None
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None  # completed | failed | timeout | cancelled | lost | released
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "node_id": self.node_id,
            "worker_id": self.worker_id,
            "started_at": to_iso(self.started_at),
            "ended_at": to_iso(self.ended_at),
            "outcome": self.outcome,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Attempt:
        return cls(
            number=int(d["number"]),
            node_id=d["node_id"],
            worker_id=d.get("worker_id"),
            started_at=parse_time(d["started_at"], "started_at"),
            ended_at=None if d.get("ended_at") is None else parse_time(d["ended_at"], "ended_at"),
            outcome=d.get("outcome"),
            error=d.get("error"),
        )


@dataclass(slots=True)
class Job:
    id: str
    type: str
    priority: int = DEFAULT_PRIORITY
    payload: dict[str, Any] = field(default_factory=dict)
    status: JobStatus = JobStatus.PENDING
    created_at: float = 0.0
    updated_at: float = 0.0
    scheduled_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    retry_count: int = 0
    max_retries: int = 3
    timeout: float | None = None
    result: Any = None
    error: str | None = None
    node_id: str | None = None
    worker_id: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    idempotency_key: str | None = None
    #: Times this job's lease expired (its node died or froze); see the poison limit.
    lease_expirations: int = 0
    #: The running attempt's last progress report (``make_progress``), or None.
    progress: dict[str, Any] | None = None
    #: Ids of the jobs that must complete before this one is due (``validate_submission``).
    depends_on: list[str] = field(default_factory=list)
    #: With ``depends_on``: ``fail`` (the default) fails this job when a dependency fails
    #: or is cancelled; ``run`` lets it run anyway.
    on_dependency_failure: str | None = None
    #: The workflow this job belongs to (the id of the workflow's first job).
    workflow_id: str | None = None
    #: On a workflow's first job only: its kind and its members' ids (``workflows.py``).
    workflow: dict[str, Any] | None = None
    #: The dependencies not completed yet; the job is ``waiting`` while this is not empty.
    waiting_for: list[str] = field(default_factory=list)
    #: Ids of the jobs that depend on this one (kept by the Broker, to release them).
    dependents: list[str] = field(default_factory=list)
    #: Dependency id -> its result, when the job asked for them (``receive_results``);
    #: None when it did not. A dependency that failed under ``run`` gives None.
    dependency_results: dict[str, Any] | None = None
    #: Grows on every change, so a Store never lets an older snapshot overwrite a newer one.
    version: int = 0
    #: Who submitted the job (the token's user) when AUTH_ENABLED; ``None`` without auth and
    #: for jobs fired by a schedule. A ``user`` sees and changes only its own jobs.
    owner: str | None = None
    #: The named queue the job waits in (each queue has its own priority order; a node
    #: claims only from the queues it serves, see ``QUEUES``).
    queue: str = DEFAULT_QUEUE

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def touch(self, now: float) -> None:
        self.updated_at = now
        self.version += 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the REST API (times as ISO 8601 strings).

        A batch's answer makes this dict for each of its 1,000 jobs, so the usual None
        times and the empty attempts are written without a call, a time already written
        is taken from ``to_iso``'s memory without a call, and the status's text is looked
        up, not made."""
        texts = ISO_TEXTS
        return {
            "id": self.id,
            "type": self.type,
            "priority": self.priority,
            "payload": self.payload,
            "status": _STATUS_TEXT.get(status := self.status) or str(status),
            "created_at": texts.get(t := self.created_at) or to_iso(t),
            "updated_at": texts.get(t := self.updated_at) or to_iso(t),
            "scheduled_at": None if (t := self.scheduled_at) is None else texts.get(t) or to_iso(t),
            "started_at": None if (t := self.started_at) is None else to_iso(t),
            "completed_at": None if (t := self.completed_at) is None else to_iso(t),
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "result": self.result,
            "error": self.error,
            "node_id": self.node_id,
            "worker_id": self.worker_id,
            "attempts": [a.to_dict() for a in attempts] if (attempts := self.attempts) else [],
            "idempotency_key": self.idempotency_key,
            "lease_expirations": self.lease_expirations,
            "progress": self.progress,
            "depends_on": self.depends_on,
            "on_dependency_failure": self.on_dependency_failure,
            "waiting_for": self.waiting_for,
            "dependents": self.dependents,
            "dependency_results": self.dependency_results,
            "workflow_id": self.workflow_id,
            "workflow": self.workflow,
            "version": self.version,
            "owner": self.owner,
            "queue": self.queue,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        """A job from its REST shape (``to_dict``); the client reads every job it is
        answered with through here (1,000 a batch), so the usual absent or empty
        fields cost no call: times are None, lists empty, the status a known word.

        A dict holding exactly ``to_dict``'s keys (every answer's job) has its values
        taken in one C call and only the few that need it converted (``_from_wire``);
        anything that one would convert otherwise (a bool or float for an integer, an
        unknown status, attempts) is read field by field below, as before."""
        if type(d) is dict and len(d) == _WIRE_LENGTH and cls is Job:
            try:
                values = _wire_values(d)
            except KeyError:
                pass
            else:
                job = _from_wire(values)
                if job is not None:
                    return job
        get = d.get
        created, updated, scheduled, started, completed = [
            None if (v := get(name)) is None else parse_time(v, name) for name in _TIMES
        ]
        status = get("status", "pending")
        known = _STATUS_OF.get(status) if type(status) is str else None
        attempts = get("attempts")
        values = (
            d["id"],
            d["type"],
            int(get("priority", DEFAULT_PRIORITY)),
            get("payload") or {},
            JobStatus(status) if known is None else known,
            created or 0.0,
            updated or 0.0,
            scheduled,
            started,
            completed,
            int(get("retry_count", 0)),
            int(get("max_retries", 3)),
            get("timeout"),
            get("result"),
            get("error"),
            get("node_id"),
            get("worker_id"),
            [Attempt.from_dict(a) for a in attempts] if attempts else [],
            get("idempotency_key"),
            int(get("lease_expirations", 0)),
            get("progress"),
            list(v) if (v := get("depends_on")) else [],
            get("on_dependency_failure"),
            get("workflow_id"),
            get("workflow"),
            list(v) if (v := get("waiting_for")) else [],
            list(v) if (v := get("dependents")) else [],
            get("dependency_results"),
            int(get("version", 0)),
            get("owner"),
            get("queue") or DEFAULT_QUEUE,
        )
        # by position (the order is _FROM_DICT_ORDER, checked against the class at import):
        # 31 keywords cost 1.4 us of a 2.5 us construction; a subclass by name
        if cls is Job:
            return Job(*values)
        return cls(**dict(zip(_FROM_DICT_ORDER, values, strict=True)))

    def dumps(self) -> str:
        """Compact storage encoding (floats kept exact, unlike the ISO wire form)."""
        d = dict(zip(_JOB_FIELDS, _get_fields(self), strict=True))
        d["status"] = str(self.status)
        d["attempts"] = [
            [a.number, a.node_id, a.worker_id, a.started_at, a.ended_at, a.outcome, a.error]
            for a in self.attempts
        ]
        return _ENCODER(d)

    @classmethod
    def loads(cls, text: str | bytes) -> Job:
        d = _DECODE(text)
        d["status"] = JobStatus(d["status"])
        d["attempts"] = [Attempt(*a) for a in d["attempts"]]
        if len(d) == len(_JOB_FIELDS):
            try:
                # positional: 21 keywords whose names json.loads made cost 2.9 us, this 0.5
                return cls(*_get_values(d))
            except KeyError:
                pass
        return cls(**d)  # not a current document: refuse or default field by field

    def has_dependents(self) -> bool:
        """Whether jobs depend on this one (cheap on a Redis Broker's unparsed reply)."""
        return bool(self.dependents)

    def event_fields(self) -> dict[str, Any]:
        """What an event says about the job: enough to show it, never its payload or result
        (read without parsing from a Redis Broker's unparsed reply)."""
        return {
            "job_id": self.id,
            "type": self.type,
            "status": str(self.status),
            "priority": self.priority,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "attempt": len(self.attempts),
            "worker_id": self.worker_id,
            "error": self.error,
            "owner": self.owner,
        }

    @property
    def results(self) -> list[Any] | None:
        """The dependencies' results in ``depends_on`` order, if the job asked for them."""
        if self.dependency_results is None:
            return None
        return [self.dependency_results.get(i) for i in self.depends_on]

    def copy(self) -> Job:
        """An independent copy; payload, result and the dependency lists are values nobody
        mutates in place (the Broker replaces them whole)."""
        clone = _shallow_copy(self)
        clone.attempts = [_shallow_copy(a) for a in self.attempts]
        return clone


_JOB_FIELDS = tuple(f.name for f in fields(Job))
#: The order of the values ``Job.from_dict`` builds; a field added to Job must be added there.
_FROM_DICT_ORDER = (
    "id", "type", "priority", "payload", "status", "created_at", "updated_at", "scheduled_at",
    "started_at", "completed_at", "retry_count", "max_retries", "timeout", "result", "error",
    "node_id", "worker_id", "attempts", "idempotency_key", "lease_expirations", "progress",
    "depends_on", "on_dependency_failure", "workflow_id", "workflow", "waiting_for",
    "dependents", "dependency_results", "version", "owner", "queue",
)  # fmt: skip
if _FROM_DICT_ORDER != _JOB_FIELDS:
    raise ImportError("Job.from_dict builds its values in another order than Job's fields")
_TIMES = ("created_at", "updated_at", "scheduled_at", "started_at", "completed_at")
#: ``to_dict``'s keys, in its order (the JSON shape every answer gives a job in).
WIRE_KEYS = (
    "id", "type", "priority", "payload", "status", "created_at", "updated_at", "scheduled_at",
    "started_at", "completed_at", "retry_count", "max_retries", "timeout", "result", "error",
    "node_id", "worker_id", "attempts", "idempotency_key", "lease_expirations", "progress",
    "depends_on", "on_dependency_failure", "waiting_for", "dependents", "dependency_results",
    "workflow_id", "workflow", "version", "owner", "queue",
)  # fmt: skip
_WIRE_LENGTH = len(WIRE_KEYS)
_wire_values = operator.itemgetter(*WIRE_KEYS)


def job_from_answer(d: Any) -> Job:
    """``Job.from_dict(d)`` for a dict nobody else holds (a job of a decoded answer): the
    job takes ``d``'s lists instead of copies. Each container made is one more object for
    the garbage collector to count and, once a batch's 1,000 jobs outlive the youngest
    generations, to walk in a full collection (which walks the whole heap): four lists
    fewer a job."""
    if type(d) is dict and len(d) == _WIRE_LENGTH:
        try:
            values = _wire_values(d)
        except KeyError:
            pass
        else:
            job = _from_wire(values, False)
            if job is not None:
                return job
    return Job.from_dict(d)


def job_from_wire_values(values: tuple[Any, ...]) -> Job:
    """``job_from_answer`` of a job the reader holds as its values in ``WIRE_KEYS`` order
    instead of a dict (the client reads a batch's answer into such rows: no dict of 31
    keys a job to build): the same job, or the same error, as ``job_from_answer`` of the
    dict of those keys and values."""
    job = _from_wire(values, False)
    if job is not None:
        return job
    return Job.from_dict(dict(zip(WIRE_KEYS, values, strict=True)))


def jobs_from_checked_rows(
    rows: Iterable[Any], values_of: Callable[[Any], tuple[Any, ...]]
) -> list[Job]:
    """``[job_from_wire_values(values_of(row)) for row in rows]`` for rows whose reader
    already checked the kinds ``_from_wire`` checks one by one: each row holds
    ``WIRE_KEYS`` as attributes (``values_of(row)``: their values in that order), its
    ``status`` a ``JobStatus``, ``priority``, ``retry_count``, ``max_retries``,
    ``lease_expirations`` and ``version`` ints (not bools), its five times text or
    None, its ``attempts``, ``depends_on``, ``waiting_for`` and ``dependents`` lists.

    The same jobs, or the same error, as that expression: a job without attempts is
    built here in one expression (no call of ``_from_wire`` and no tuple of 31 values
    to unpack and check), one with attempts by ``Job.from_dict`` as before. The client
    reads a batch's 1,000 jobs through here (callgrind: figures in the commit)."""
    seconds = _iso_seconds
    return [
        Job(
            row.id,
            row.type,
            row.priority,
            row.payload or {},
            row.status,
            (
                None
                if (t := row.created_at) is None
                else seconds.get(t) or parse_time(t, "created_at")
            )
            or 0.0,
            (
                None
                if (t := row.updated_at) is None
                else seconds.get(t) or parse_time(t, "updated_at")
            )
            or 0.0,
            None
            if (t := row.scheduled_at) is None
            else seconds.get(t) or parse_time(t, "scheduled_at"),
            None if (t := row.started_at) is None else parse_time(t, "started_at"),
            None if (t := row.completed_at) is None else parse_time(t, "completed_at"),
            row.retry_count,
            row.max_retries,
            row.timeout,
            row.result,
            row.error,
            row.node_id,
            row.worker_id,
            row.attempts,
            row.idempotency_key,
            row.lease_expirations,
            row.progress,
            row.depends_on,
            row.on_dependency_failure,
            row.workflow_id,
            row.workflow,
            row.waiting_for,
            row.dependents,
            row.dependency_results,
            row.version,
            row.owner,
            row.queue or DEFAULT_QUEUE,
        )
        if not row.attempts
        else Job.from_dict(dict(zip(WIRE_KEYS, values_of(row), strict=True)))
        for row in rows
    ]


def _from_wire(values: tuple[Any, ...], copy: bool = True) -> Job | None:
    """``Job.from_dict`` of a dict holding exactly ``to_dict``'s keys, whose values are
    ``values`` in that order; None when one of them is not the usual kind (an integer
    field holding another type, a status no ``JobStatus`` spells, attempts), which
    ``from_dict`` then reads field by field, for the same job or the same error.

    The five times go through ``parse_time`` in the same order, so a bad one raises what
    it raised before. Callgrind, an answer's job: 38.6k -> 30.9k instructions."""
    (
        job_id, job_type, priority, payload, status, created, updated, scheduled, started,
        completed, retry_count, max_retries, timeout, result, error, node_id, worker_id,
        attempts, key, lease_expirations, progress, depends_on, on_failure, waiting_for,
        dependents, dependency_results, workflow_id, workflow, version, owner, queue,
    ) = values  # fmt: skip
    known = _STATUS_OF.get(status) if type(status) is str else None
    if (
        known is None
        or attempts
        or type(priority) is not int
        or type(retry_count) is not int
        or type(max_retries) is not int
        or type(lease_expirations) is not int
        or type(version) is not int
    ):
        return None
    seconds = _iso_seconds
    if created is not None:
        created = (type(created) is str and seconds.get(created)) or parse_time(
            created, "created_at"
        )
    if updated is not None:
        updated = (type(updated) is str and seconds.get(updated)) or parse_time(
            updated, "updated_at"
        )
    if scheduled is not None:
        scheduled = (type(scheduled) is str and seconds.get(scheduled)) or parse_time(
            scheduled, "scheduled_at"
        )
    if started is not None:
        started = parse_time(started, "started_at")
    if completed is not None:
        completed = parse_time(completed, "completed_at")
    if not copy:  # the lists as they are (an empty one too); another kind as from_dict reads it
        if type(attempts) is not list:
            attempts = []
        if type(depends_on) is not list:
            depends_on = list(depends_on) if depends_on else []
        if type(waiting_for) is not list:
            waiting_for = list(waiting_for) if waiting_for else []
        if type(dependents) is not list:
            dependents = list(dependents) if dependents else []
    else:
        attempts = []
        depends_on = list(depends_on) if depends_on else []
        waiting_for = list(waiting_for) if waiting_for else []
        dependents = list(dependents) if dependents else []
    return Job(
        job_id,
        job_type,
        priority,
        payload or {},
        known,
        created or 0.0,
        updated or 0.0,
        scheduled,
        started,
        completed,
        retry_count,
        max_retries,
        timeout,
        result,
        error,
        node_id,
        worker_id,
        attempts,
        key,
        lease_expirations,
        progress,
        depends_on,
        on_failure,
        workflow_id,
        workflow,
        waiting_for,
        dependents,
        dependency_results,
        version,
        owner,
        queue or DEFAULT_QUEUE,
    )


_STATUS_OF = {str(s): s for s in JobStatus}
#: Each status's text, as ``str(status)`` makes it (one object each, not one a call).
_STATUS_TEXT = {s: str(s) for s in JobStatus}
_get_fields = operator.attrgetter(*_JOB_FIELDS)
_get_values = operator.itemgetter(*_JOB_FIELDS)
_ENCODER = compact_encoder()
_DECODE = json.loads


# --------------------------------------------------------------------------
# progress

#: Longest progress message kept; a longer one is cut (with an ellipsis), not refused:
#: a processor's report must never fail its job.
MAX_PROGRESS_MESSAGE = 200


def make_progress(fraction: Any, message: Any, now: float) -> dict[str, Any]:
    """A processor's progress report as the record keeps it, or ``ValueError``.

    ``fraction`` is a number from 0 to 1 (a mistake in the processor, such as
    40 for 40 %, is refused with the reason); ``message`` is optional text cut
    to ``MAX_PROGRESS_MESSAGE`` characters. ``at`` is when it was reported.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"progress must be a number from 0 to 1, not {clip(fraction)}")
    # the range first: isfinite(10**400) is an OverflowError, not the reason
    if not (0 <= fraction <= 1 and math.isfinite(fraction)):
        raise ValueError(f"progress must be from 0 to 1, got {clip(fraction)}")
    if message is not None:
        if not isinstance(message, str):
            raise ValueError(f"a progress message is text, not a {type(message).__name__}")
        if len(message) > MAX_PROGRESS_MESSAGE:
            message = message[: MAX_PROGRESS_MESSAGE - 1] + "\u2026"
        # a lone surrogate is no text: the API would send back an escape it refuses itself
        message = message.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return {"fraction": float(fraction), "message": message, "at": now}
