"""How a job is written for the Lua scripts and read back from their replies.

Floats and JSON stay exact because Lua never parses or re-encodes JSON (see
the package's docstring): a job is kept as JSON *fragments*, each written by
Python's ``json`` and only ever cut and concatenated by Lua. Which fragments,
in which order, is ``layout.py``'s declaration; this module holds the
encoders the generated functions call and the two types a reply becomes:

- ``RawJob``: a job as a script returned it (``b`` and the values of ``m``),
  with its header (id, type, status, version) read without parsing, and
  ``job()``, the one place it is parsed;
- ``LazyJob``: the ``Job`` the Broker hands back from enqueue-free moves
  whose result usually goes no further than its header (finish): a real
  ``Job`` made from a ``RawJob`` that parses it the first time a field
  beyond the header is read or any field is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
import orjson

from ...jobs import Attempt, Job, JobStatus
from ...jsontext import compact_encoder, orjson_exact
from .layout import LAYOUT

#: Joins many values into one script argument or reply: redis-py packs and parses
#: arguments in pure Python (~0.7 us each), so 1000 jobs x 21 fields cost 14 ms as
#: separate arguments and under 1 ms joined. JSON text never holds a raw 0x1f.
SEP = "\x1f"
BSEP = b"\x1f"
#: Between the records of a reply whose records contain ``SEP`` (JSON never holds it raw).
RS = "\x1e"


#: Finite floats' texts, by value: ``repr`` of a float costs 0.3-1 us, and a batch's jobs
#: share their times (one ``now`` for created_at and updated_at, often one scheduled_at),
#: so each is written 2-4 times a job. Zero is never kept: 0.0 and -0.0 are one key.
_float_texts: dict[float, str] = {}
_FLOAT_TEXTS_MAX = 4096


def float_text(value: float) -> str:
    """``repr(value)`` of a finite float, remembered (see ``_float_texts``)."""
    text = _float_texts.get(value)
    if text is None:
        text = repr(value)
        if value:
            if len(_float_texts) >= _FLOAT_TEXTS_MAX:
                _float_texts.clear()
            _float_texts[value] = text
    return text


def num(value: float) -> str:
    """A time or score as text that parses back to the very same double."""
    if type(value) is float and math.isfinite(value):
        return float_text(value)
    return json.dumps(value)


#: ``json.dumps(value, separators=(",", ":"))`` without building an encoder per call
#: (json.dumps does for any non-default argument, and JSONEncoder.encode too).
_compact = compact_encoder()
_encode_str = json.encoder.encode_basestring_ascii  # what the encoder writes for a str
_loads = json.loads


def enc(value: Any) -> str:
    """One JSON fragment; the common scalars skip the json module (hot path)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int:
        return repr(value)
    if kind is float and math.isfinite(value):
        return float_text(value)
    if kind is list and not value:  # depends_on, dependents, waiting_for of most jobs
        return "[]"
    return _compact(value)


def jtext(value: Any) -> str:
    """One JSON fragment for a value that is usually a str (or None)."""
    return _encode_str(value) if type(value) is str else enc(value)  # type: ignore[no-any-return]


#: Payloads were validated (``validate_submission`` refuses one that holds itself), so
#: they are written by one shared encoder without the circular-reference memo.
_compact_payload = compact_encoder(check_circular=False)


def _payload(value: Any) -> str:
    return "{}" if type(value) is dict and not value else _compact_payload(value)


def _key(value: str | None) -> str:
    """The idempotency key as JSON text ('' for none): no raw caller string meets SEP."""
    return "" if value is None else json.dumps(value)


def _attempt_values(attempts: list[Attempt]) -> tuple[str, str, str, str, str]:
    """The five attempts values of ``m``: closed count and array, the open one's parts."""
    if not attempts:
        return "0", "[]", "", "", ""
    closed = [
        [a.number, a.node_id, a.worker_id, a.started_at, a.ended_at, a.outcome, a.error]
        for a in attempts
    ]
    last = attempts[-1]
    if last.ended_at is not None:
        return str(len(closed)), _compact(closed), "", "", ""
    closed.pop()
    return (
        str(len(closed)),
        _compact(closed) if closed else "[]",
        _compact([last.number, last.node_id])[1:-1],
        enc(last.worker_id),
        enc(last.started_at),
    )


def _attempts_text(closed: str, head: str, worker: str, start: str) -> str:
    """The attempts as the document's JSON array, the open one last."""
    if not head:
        return closed
    opened = "[" + head + "," + worker + "," + start + ",null,null,null]"
    return "[" + opened + "]" if closed == "[]" else closed[:-1] + "," + opened + "]"


def _value(text: str) -> Any:
    """One JSON fragment as json.loads reads it; the usual null, numbers and plain
    strings without the json module."""
    if text == "null":
        return None
    first = text[0]
    if first == '"':
        return _text_of(text)
    if first.isdigit() or first == "-":
        if text.isdigit():
            return int(text)
        try:
            return int(text) if text[1:].isdigit() else float(text)
        except ValueError:
            pass
    return _loads(text)


def _text_of(text: str) -> str:
    """A JSON string's value (no escape inside: the text between the quotes)."""
    return text[1:-1] if "\\" not in text else _loads(text)  # type: ignore[no-any-return]


def check_name(value: str, what: str) -> str:
    if SEP in value:
        raise ValueError(f"{what} {value!r} contains the byte 0x1f, which the scripts reserve")
    return value


def text_only(value: str, what: str) -> str:
    """``value``, a str, else TypeError: packed (``pack_values``), any other value would
    reach a script as nil or a number, which fails or writes at that job, after the jobs
    before it in the batch were written (joined by SEP, it raised here)."""
    if type(value) is not str:
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


STATUS = {str(s): s for s in JobStatus}

#: Values (strings) as one MessagePack array: what a script reads with
#: ``cmsgpack.unpack_limit`` at about 400 Redis instructions a value, where
#: ``string.match`` cut the same values joined by ``SEP`` at over 1,000 (an enqueue's
#: header, a finish's item). Only for arguments, never stored.
pack_values: Any = msgspec.msgpack.Encoder().encode

#: What the layout's generated functions call.
HELPERS: dict[str, Any] = {
    "enc": enc,
    "jtext": jtext,
    "text": _encode_str,
    "NO_ATTEMPTS": ("0", "[]", "", "", ""),
    "payload": _payload,
    "key": _key,
    "num": num,
    "check_name": check_name,
    "attempt_values": _attempt_values,
    "Attempt": Attempt,
    "attempts_text": _attempts_text,
    "loads": _loads,
    "STATUS": STATUS,
    "SEP": SEP,
    # an enqueue's header (enqueue_arg): its values as one MessagePack array
    "pack": pack_values,
    "text_only": text_only,
}


def _orjson_or_json(text: str) -> Any:
    try:
        return _orjson_loads(text)
    except _OrjsonError:  # NaN, Infinity, 1e400, a lone surrogate: json.loads reads them
        return _loads(text)


_orjson_loads = orjson.loads
_OrjsonError = orjson.JSONDecodeError


_generated = LAYOUT.functions(HELPERS)
#: ``encode(job, status) -> (b, values of m)``, for the job as it will be with ``status``.
encode: Any = _generated["encode"]
#: ``enqueue_arg(job, b, values) -> (header, b, m)``: a job's three arguments of the enqueue
#: script (a header of id, created_at, the values the script reads, queue and type: a
#: MessagePack array, as bytes).
enqueue_arg: Any = _generated["enqueue_arg"]
#: ``decode(b, values) -> Job``: what ``Job.loads`` reads from the document, faster.
decode: Any = _generated["decode"]
#: ``dumps(b, values) -> str``: ``Job.dumps()`` of that job, byte for byte, without a parse.
dumps: Any = _generated["dumps"]
#: ``doc(b, values) -> str``: the document the Lua ``doc()`` writes.
doc: Any = _generated["doc"]
#: ``job_text(b, values) -> str``: the JSON array ``decode`` parses (body, values, attempts).
_job_text: Any = _generated["job_text"]
#: ``build(v, values) -> Job``: what ``decode`` makes of ``v``, that array parsed.
_build: Any = _generated["build"]


def decode_many(bodies: Sequence[bytes], ms: Sequence[bytes]) -> list[Job]:
    """``[decode(b, values of m) ...]`` of a reply's jobs, every field parsed.

    Why: a claim's leases were decoded a job at a time, each one JSON text joined from
    40 pieces, parsed by its own ``loads`` call, its open attempt's values by more
    (6-7 us a job, a tenth of a noop drain's node CPU). Here all the jobs' texts
    (``job_text``) are parsed by one call, and ``build`` makes each Job as ``decode``
    does. orjson reads them when it reads every number in them exactly
    (``orjson_exact``), else json.loads does, as ``decode`` reads a
    job; a text orjson refuses (NaN, 1e400) is read by json.loads too (ids and tokens
    rarely hold 19 decimal digits in a row; when one does, the reply is read the slower
    way).
    """
    fs = [m.decode().split(SEP) for m in ms]
    job_text = _job_text
    text = "[" + ",".join([job_text(b.decode(), f) for b, f in zip(bodies, fs, strict=True)]) + "]"
    arrays = _orjson_or_json(text) if orjson_exact(text.encode()) else _loads(text)
    build = _build
    return [build(v, f) for v, f in zip(arrays, fs, strict=True)]


#: What ``encode_many`` compares between a job and the one before: every field ``encode``
#: writes but the two it writes itself (id, payload), numbers apart from the rest.
_NUMBERS = (
    "priority", "created_at", "updated_at", "scheduled_at", "started_at", "completed_at",
    "retry_count", "max_retries", "timeout", "lease_expirations", "version",
)  # fmt: skip
_CONTAINERS = (
    "result", "attempts", "progress", "depends_on", "workflow", "waiting_for", "dependents",
    "dependency_results",
)  # fmt: skip
_OTHERS = tuple(
    f.name
    for f in dataclasses.fields(Job)
    if f.name not in ("id", "payload", "status", *_NUMBERS, *_CONTAINERS)
)
_numbers_of = operator.attrgetter(*_NUMBERS)
_rest_of = operator.attrgetter(*_CONTAINERS, *_OTHERS)
_ID_KEY = '"id":'
_PAYLOAD_KEY = '"payload":'


def _template(job: Job, numbers: tuple[Any, ...], rest: tuple[Any, ...], body: str) -> Any:
    """``body`` cut around the job's id and payload texts, when ``encode_many`` may write
    the next jobs' bodies from it, else None.

    It may when a value equal to each of the job's has its text: numbers that are
    ints, bools, None or floats but zero (0.0 equals -0.0, whose text differs), and
    of the same type (``encode_many`` checks: 1, 1.0 and True are equal), containers
    that are None or an empty list (equal dicts may hold 1 and 1.0), the other fields
    strings or None; and when the body starts with the id and holds ``"payload":``
    first before the payload's text (the fields before it are strings and numbers,
    whose JSON holds no bare quote)."""
    for value in numbers:
        kind = type(value)
        if kind is float:
            if not value or not math.isfinite(value):
                return None
        elif kind is not int and kind is not bool and value is not None:
            return None
    for i, value in enumerate(rest):
        if value is None:
            continue
        if i < len(_CONTAINERS):
            if type(value) is not list or value:
                return None
        elif type(value) is not str:
            return None
    if type(job.id) is not str or type(job.payload) is not dict:
        return None
    head = _ID_KEY + _encode_str(job.id)
    at = body.find(_PAYLOAD_KEY)
    if not body.startswith(head) or at < len(head):
        return None
    at += len(_PAYLOAD_KEY)
    payload = _payload(job.payload)
    if not body.startswith(payload, at):
        return None
    return body[len(head) : at], body[at + len(payload) :]


def encode_many(jobs: Sequence[Job], statuses: Sequence[JobStatus]) -> list[tuple[str, list[str]]]:
    """``[encode(job, status) ...]``, the same texts, for a batch whose jobs mostly differ
    in id and payload alone.

    Why: a batch's jobs share type, times, priority and every default, and ``encode``
    wrote all 37 values of each (37k instructions a job of 1,000, callgrind). A job
    whose other fields equal the job's before, its numbers of the same types, with
    the same status, takes that job's values and its body's text between the id and
    the payload and after the payload (``_template`` says when equal values are one
    text); anything else is written by ``encode``.
    """
    out: list[tuple[str, list[str]]] = []
    numbers: tuple[Any, ...] = ()
    rest: tuple[Any, ...] = ()
    kinds: tuple[type, ...] = ()
    cut: Any = None
    last_status: JobStatus | None = None
    values: list[str] = []
    text, payload, numbers_of, rest_of = _encode_str, _payload, _numbers_of, _rest_of
    for job, status in zip(jobs, statuses, strict=True):
        if (
            cut is not None
            and status is last_status
            and (now := numbers_of(job)) == numbers
            and rest_of(job) == rest
            and tuple(map(type, now)) == kinds
            and type(job.id) is str
            and type(job.payload) is dict
        ):
            out.append(
                (
                    "".join((_ID_KEY, text(job.id), cut[0], payload(job.payload), cut[1])),
                    values.copy(),
                )
            )
            continue
        body, values = encode(job, status)
        out.append((body, values))
        numbers, rest, last_status = numbers_of(job), rest_of(job), status
        kinds = tuple(map(type, numbers))
        cut = _template(job, numbers, rest, body)
        values = values.copy()  # the template's own: the job keeps the list it was given
    return out


#: The values of ``m`` an enqueue's header carries (``ENQUEUE_READS``), as a tuple.
_enqueue_reads = operator.itemgetter(*(LAYOUT.index(r) for r in LAYOUT.enqueue_reads))


def enqueue_args_many(jobs: Sequence[Job], encoded: Sequence[tuple[str, list[str]]]) -> list[Any]:
    """The job arguments of one call of enqueue.lua or enqueue_claim.lua: each job's three
    (``enqueue_arg``), except that a job whose other header values (created_at, the values
    the script reads, queue, type) are the job's before it sends ``SEP`` and its id as its
    header, and the script takes them from the last full one (enqueue_one.lua); and a job
    whose ``m`` is the job's before sends ``''`` for it.

    Why: a batch's jobs mostly share all but their id, and the script unpacked nine values
    a job (8 Lua strings and a cmsgpack call: some 9k of 66.7k Redis instructions a job
    of a batch of 1,000). The first job always sends its full header, so no call reads
    another call's. Its created_at must be the very same object (equal floats may be
    written differently: 0.0 and -0.0, 1 and 1.0), its queue and type str.
    """
    out: list[Any] = []
    sep, reads_of, arg = SEP, _enqueue_reads, enqueue_arg
    created: Any = None
    reads: Any = None
    queue: Any = None
    job_type: Any = None
    last: list[str] | None = None  # the values of the m sent last
    first = True
    for job, (body, values) in zip(jobs, encoded, strict=True):
        if (
            not first
            and job.created_at is created
            and reads_of(values) == reads
            and job.queue == queue
            and job.type == job_type
            and type(job.queue) is str
            and type(job.type) is str
        ):
            if values == last:
                out += (sep + check_name(job.id, "job id"), body, "")
            else:
                out += (sep + check_name(job.id, "job id"), body, sep.join(values))
                last = values
            continue
        out += arg(job, body, values)
        created, reads, queue, job_type = job.created_at, reads_of(values), job.queue, job.type
        last = values
        first = False
    return out


_STATUS_AT: int = _generated["STATUS_AT"]
_VERSION_AT: int = _generated["VERSION_AT"]


def _header(body: str, values: list[str]) -> tuple[str, str, JobStatus, int]:
    """A job's id, type, status and version without parsing: the body starts
    ``"id":<json string>,"type":<json string>,`` (the layout's header)."""
    at = body.index(',"type":')
    end = body.index(',"priority":', at)
    job_id, job_type = body[5:at], body[at + 8 : end]
    return (
        job_id[1:-1] if "\\" not in job_id else _loads(job_id),
        job_type[1:-1] if "\\" not in job_type else _loads(job_type),
        STATUS[values[_STATUS_AT]],
        int(values[_VERSION_AT]),
    )


class RawJob(NamedTuple):
    """A job as a script returned it: its body ``b`` and the values of its ``m``.

    Nothing is parsed until ``job()``; ``header()`` reads id, type, status and
    version by position. (A named tuple: one is made per finished job.)
    """

    body: str
    values: list[str]

    @classmethod
    def of(cls, body: str, m: str) -> RawJob:
        return cls(body, m.split(SEP))

    def header(self) -> tuple[str, str, JobStatus, int]:
        """``(id, type, status, version)``, read by position (see ``_header``)."""
        return _header(self.body, self.values)

    @property
    def m(self) -> str:
        return SEP.join(self.values)

    @property
    def created_text(self) -> str:
        """``created_at`` as the body holds it: the last field of that name, which only
        numbers, null and strings follow, none of which can hold a raw quote."""
        at = self.body.rindex(',"created_at":') + 14
        return self.body[at : self.body.index(",", at)]

    def job(self) -> Job:
        """The job, parsed: every field, as ``Job.loads`` of its document reads it."""
        return decode(self.body, self.values)  # type: ignore[no-any-return]

    def dumps(self) -> str:
        """``Job.dumps()`` of ``job()``, byte for byte, without parsing."""
        return dumps(self.body, self.values)  # type: ignore[no-any-return]


_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_new = object.__new__
_set = object.__setattr__
_HEADER = frozenset({"id", "type", "status", "version"})


class LazyJob(Job):
    """A ``Job`` from a ``RawJob``, parsed the first time more than its header is used.

    Why: a finished job travels from the finish reply to the finisher's
    metrics (and, where the Broker does not keep the records itself, to its
    Store record) with nothing on the way reading more than its id, type,
    version and status; parsing it whole cost more than the Lua that finished
    it. The header slots are set at birth; the other slots stay unset, so
    reading one fails over to ``__getattr__``, which parses ``raw`` into every
    slot and drops it. Writing any field parses first too, so ``raw`` stands
    for the job only while nothing can have changed it. Equal to a plain
    ``Job`` with the same fields; its ``dumps()`` while unparsed is the raw
    values'.
    """

    __slots__ = ("raw",)
    raw: RawJob | None

    @classmethod
    def of(cls, raw: RawJob) -> LazyJob:
        return lazy_job(raw.body, raw.values)

    @staticmethod
    def _of(body: str, values: list[str]) -> LazyJob:
        job = _new(LazyJob)
        job_id, job_type, status, version = _header(body, values)
        _set_raw(job, _raw_new(RawJob, (body, values)))
        _set_id(job, job_id)
        _set_type(job, job_type)
        _set_status(job, status)
        _set_version(job, version)
        return job

    def parse(self) -> None:
        """The parse point: every field from ``raw``, which is then dropped."""
        raw = raw_of(self)
        if raw is None:
            return
        whole = raw.job()
        setattr_ = object.__setattr__
        for name in _FIELDS:
            if name not in _HEADER:
                setattr_(self, name, object.__getattribute__(whole, name))
        setattr_(self, "raw", None)

    def __getattr__(self, name: str) -> Any:
        # reached only for an unset slot: a field beyond the header is wanted
        if name in _FIELDS and raw_of(self) is not None:
            self.parse()
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.parse()
        object.__setattr__(self, name, value)

    def dumps(self) -> str:
        raw = raw_of(self)
        return raw.dumps() if raw is not None else Job.dumps(self)

    def has_dependents(self) -> bool:
        # read from the raw value while unparsed: every finished job is asked (Releases)
        raw = raw_of(self)
        if raw is not None:
            return raw.values[_DEPENDENTS] != "[]"
        return bool(self.dependents)

    def event_fields(self) -> dict[str, Any]:
        # read from the raw values while unparsed: every finished job is published, and
        # parsing it whole for these ten fields was a fifth of the node's drain CPU
        raw = raw_of(self)
        if raw is None:
            return Job.event_fields(self)
        body, values = raw
        # after created_at (a number) come max_retries (a number), then timeout; owner is
        # the last field of that name (queue, a JSON string, follows it)
        at = body.rindex(',"created_at":')
        at = body.index(',"max_retries":', at) + 15
        owner = body.rindex(',"owner":') + 9
        return {
            "job_id": self.id,
            "type": self.type,
            "status": str(self.status),
            "priority": _value(values[_PRIORITY]),
            "retry_count": _value(values[_RETRY_COUNT]),
            "max_retries": _value(body[at : body.index(",", at)]),
            "attempt": int(values[_CLOSED]) + (1 if values[_OPEN] else 0),
            "worker_id": _value(values[_WORKER]),
            "error": _value(values[_ERROR]),
            "owner": _value(body[owner : body.index(',"queue":', owner)]),
        }

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Job):
            return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like Job

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # copies and pickles are plain jobs
        return (Job.loads, (self.dumps(),))


_LUA_NAMES = [v.lua for v in LAYOUT.values]
#: Where a job's ``dependents`` and what its events show sit among the values of ``m``.
_DEPENDENTS = [v.field for v in LAYOUT.values].index("dependents")
_PRIORITY, _RETRY_COUNT, _WORKER, _ERROR, _CLOSED, _OPEN = (
    _LUA_NAMES.index(name) for name in ("PR", "RC", "WK", "ERR", "AN", "AON")
)

#: ``LazyJob.of(RawJob(body, values))`` with two Python calls fewer (a finished job each).
lazy_job = LazyJob._of
_raw_new = tuple.__new__

# The slots' own setters, past LazyJob.__setattr__: object.__setattr__ looks the name up
# again on every call (1.9 against 0.9 us for the five, a finished job each).
_set_raw = LazyJob.raw.__set__  # type: ignore[attr-defined]
_set_id = Job.id.__set__  # type: ignore[attr-defined]
_set_type = Job.type.__set__  # type: ignore[attr-defined]
_set_status = Job.status.__set__  # type: ignore[attr-defined]
_set_version = Job.version.__set__  # type: ignore[attr-defined]


def raw_of(job: Job) -> RawJob | None:
    """A ``LazyJob``'s raw values while it is unparsed, else None (any other job too)."""
    try:
        return object.__getattribute__(job, "raw")  # type: ignore[no-any-return]
    except AttributeError:  # not a LazyJob, or one made field by field (dataclasses.replace)
        return None


def record_parts(job: Job) -> tuple[str, str, str]:
    """A job's ``b``, ``m`` and created_at text for its Store record, encoded once."""
    if type(job) is LazyJob:
        raw = raw_of(job)
        if raw is not None:
            return raw.body, raw.m, raw.created_text
    body, values = encode(job, job.status)
    return body, SEP.join(values), num(job.created_at)


def split_reply(reply: bytes) -> list[bytes]:
    return reply.split(BSEP) if reply else []


def hash_tag(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"redis key prefix {prefix!r} must be non-empty and without braces")
    return "{" + prefix + "}:"


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
