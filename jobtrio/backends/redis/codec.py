"""How a job is written for the Lua scripts and read back from their replies.

Floats and JSON stay exact because Lua never parses or re-encodes JSON (see
the package's docstring): a job is kept as JSON *fragments*, each written by
Python's ``json`` and only ever cut and concatenated by Lua. ``job_fields``
writes them, ``job_from_raw`` and ``stored_from_fields`` read them back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from typing import Any

from ...jobs import Attempt, Job, JobStatus

#: Joins many values into one script argument or reply: redis-py packs and parses
#: arguments in pure Python (~0.7 us each), so 1000 jobs x 21 fields cost 14 ms as
#: separate arguments and under 1 ms joined. JSON text never holds a raw 0x1f.
SEP = "\x1f"
BSEP = b"\x1f"
#: Between the records of a reply whose records contain ``SEP`` (JSON never holds it raw).
RS = "\x1e"


def num(value: float) -> str:
    """A time or score as text that parses back to the very same double."""
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return json.dumps(value)


#: ``json.dumps(value, separators=(",", ":"))`` without building an encoder per call
#: (json.dumps does for any non-default argument: about 1 us of a 2 us call).
_compact = json.JSONEncoder(separators=(",", ":")).encode


def enc(value: Any) -> str:
    """One JSON fragment; the common scalars skip the json module (hot path)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return _compact(value)


_encode_str = json.encoder.encode_basestring_ascii  # what the encoder writes for a str


def _jtext(value: Any) -> str:
    """One JSON fragment for a value that is usually a str (or None)."""
    return _encode_str(value) if type(value) is str else enc(value)


def check_name(value: str, what: str) -> str:
    if SEP in value:
        raise ValueError(f"{what} {value!r} contains the byte 0x1f, which the scripts reserve")
    return value


def job_fields(job: Job, status: JobStatus) -> tuple[str, list[str]]:
    """The job's body and its ``FIELDS`` values (see the Lua), ``''`` for an absent value.

    The idempotency key travels as JSON text too, so no raw caller string ever
    meets the separator.
    """
    payload = job.payload
    # what _compact({"id": .., "type": .., ..})[1:-1] writes, without building the dict
    body = (
        '"id":' + _jtext(job.id) + ',"type":' + _jtext(job.type)
        + ',"priority":' + enc(job.priority)
        + ',"payload":' + ("{}" if type(payload) is dict and not payload else _compact(payload))
        + ',"created_at":' + enc(job.created_at) + ',"max_retries":' + enc(job.max_retries)
        + ',"timeout":' + enc(job.timeout)
        + ',"idempotency_key":' + _jtext(job.idempotency_key)
    )  # fmt: skip
    if job.attempts:
        attempts = [
            [a.number, a.node_id, a.worker_id, a.started_at, a.ended_at, a.outcome, a.error]
            for a in job.attempts
        ]
    else:
        attempts = []
    open_head = open_worker = open_start = ""
    if job.attempts and job.attempts[-1].ended_at is None:
        last = job.attempts[-1]
        attempts.pop()
        open_head = _compact([last.number, last.node_id])[1:-1]
        open_worker = enc(last.worker_id)
        open_start = enc(last.started_at)
    return body, [
        str(status),
        enc(job.priority),
        "" if job.idempotency_key is None else json.dumps(job.idempotency_key),
        enc(job.updated_at),
        enc(job.scheduled_at),
        enc(job.started_at),
        enc(job.completed_at),
        enc(job.retry_count),
        enc(job.result),
        enc(job.error),
        enc(job.node_id),
        enc(job.worker_id),
        enc(job.lease_expirations),
        enc(job.version),
        str(len(attempts)),
        _compact(attempts) if attempts else "[]",
        open_head,
        open_worker,
        open_start,
    ]


def doc_from_fields(body: str, f: list[str]) -> str:
    """The document the Lua ``doc()`` builds from these values (see ``job_fields``)."""
    attempts = f[15]
    if f[16]:
        opened = "[" + f[16] + "," + f[17] + "," + f[18] + ",null,null,null]"
        attempts = "[" + opened + "]" if attempts == "[]" else attempts[:-1] + "," + opened + "]"
    return (
        "{" + body + ',"status":"' + f[0] + '","updated_at":' + f[3]
        + ',"scheduled_at":' + f[4] + ',"started_at":' + f[5] + ',"completed_at":' + f[6]
        + ',"retry_count":' + f[7] + ',"result":' + f[8] + ',"error":' + f[9]
        + ',"node_id":' + f[10] + ',"worker_id":' + f[11] + ',"attempts":' + attempts
        + ',"lease_expirations":' + f[12] + ',"version":' + f[13] + "}"
    )  # fmt: skip


def _dumps_from_fields(body: str, f: list[str]) -> str:
    """``Job.dumps()`` of the job these values hold, byte for byte, without parsing it.

    The same fragments as ``doc_from_fields`` in ``Job.dumps``' field order: the
    body is cut at its ``created_at``, ``max_retries`` and ``idempotency_key``.
    The last ``created_at`` is the field (a payload key may spell it too, but
    only numbers, null and strings, which never hold a raw quote, follow it),
    and the first of the other two after it are the fields.
    """
    attempts = f[15]
    if f[16]:
        opened = "[" + f[16] + "," + f[17] + "," + f[18] + ",null,null,null]"
        attempts = "[" + opened + "]" if attempts == "[]" else attempts[:-1] + "," + opened + "]"
    ca = body.rindex(',"created_at":')
    mr = body.index(',"max_retries":', ca)
    ik = body.index(',"idempotency_key":', mr)
    return (
        "{" + body[:ca] + ',"status":"' + f[0] + '"' + body[ca:mr]
        + ',"updated_at":' + f[3] + ',"scheduled_at":' + f[4] + ',"started_at":' + f[5]
        + ',"completed_at":' + f[6] + ',"retry_count":' + f[7] + body[mr:ik]
        + ',"result":' + f[8] + ',"error":' + f[9] + ',"node_id":' + f[10]
        + ',"worker_id":' + f[11] + ',"attempts":' + attempts + body[ik:]
        + ',"lease_expirations":' + f[12] + ',"version":' + f[13] + "}"
    )  # fmt: skip


def job_from_raw(body: str, m: str) -> Job:
    """A job from a script's raw ``b`` and ``m``: ``Job.loads`` of its document, faster."""
    return _job_from_fields(body, m.split(SEP))


def _job_from_fields(body: str, f: list[str]) -> Job:
    """A job from ``b`` and the values of ``m``, as ``Job.loads`` reads its document.

    Claimed jobs are parsed whole (a worker needs every field), 7.5 us a job
    through the document. Here json parses only the body; the values in ``m``
    are each one JSON fragment, read by kind: a word, a number, null, or JSON
    text for json (strings, results, closed attempts).
    """
    d = _loads("{" + body + "}")
    attempts = [Attempt(*a) for a in _loads(f[15])] if f[15] != "[]" else []
    if f[16]:
        number, node = f[16].split(",", 1)
        attempts.append(Attempt(int(number), _text_of(node), _value(f[17]), _value(f[18])))
    return Job(
        d["id"],
        d["type"],
        d["priority"],
        d["payload"],
        _STATUS[f[0]],
        d["created_at"],
        _value(f[3]),
        _value(f[4]),
        _value(f[5]),
        _value(f[6]),
        _value(f[7]),
        d["max_retries"],
        d["timeout"],
        _value(f[8]),
        _value(f[9]),
        _value(f[10]),
        _value(f[11]),
        attempts,
        d["idempotency_key"],
        _value(f[12]),
        _value(f[13]),
    )


_loads = json.loads
# job_from_raw passes the fields by position: a new field of Job must be placed there too
assert tuple(f.name for f in dataclasses.fields(Job)) == (
    "id", "type", "priority", "payload", "status", "created_at", "updated_at",
    "scheduled_at", "started_at", "completed_at", "retry_count", "max_retries", "timeout",
    "result", "error", "node_id", "worker_id", "attempts", "idempotency_key",
    "lease_expirations", "version",
), "Job's fields changed: update job_from_raw in jobtrio/backends/redis.py"  # fmt: skip


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


FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_FIELD_NAMES = frozenset(FIELDS)
_fields_of = operator.attrgetter(*FIELDS)
_STATUS = {str(s): s for s in JobStatus}


class _StoredJob(Job):
    """A job as a script returned it: its raw ``b`` and ``m``, parsed only when used whole.

    Why: a finished job travels from the finish reply to the finisher's metrics
    (and, where the Broker does not keep the records itself, to its Store
    record) with nothing on the way reading more than its id, type, version
    and status. Parsing it whole cost more than the Lua that finished it. So the
    header fields are set at birth and every other field slot is left unset:
    the first read of one fails over to ``__getattr__``, which parses the raw
    values into every slot and forgets them. Any assignment parses first too,
    so the raw values stand for the job only while nothing can have changed
    (changing a nested value needs a field read, which parses). It is a real
    ``Job`` for every caller: equal to a plain one with the same fields, and
    copied or pickled as a plain one.
    """

    __slots__ = ("_body", "_fields")

    def __getattr__(self, name: str) -> Any:
        # reached only for an unset slot: a field beyond the header is wanted
        if name in _FIELD_NAMES and raw_of(self) is not None:
            self._parse()
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if raw_of(self) is not None:
            self._parse()
        object.__setattr__(self, name, value)

    def _parse(self) -> None:
        body, fields = raw_of(self)  # type: ignore[misc]
        whole = _job_from_fields(body, fields)
        for name, value in zip(FIELDS, _fields_of(whole), strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_body", None)

    def dumps(self) -> str:
        raw = raw_of(self)
        return _dumps_from_fields(*raw) if raw is not None else Job.dumps(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Job):
            return _fields_of(self) == _fields_of(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like Job

    def __repr__(self) -> str:
        return "Job" + Job.__repr__(self)[len(type(self).__qualname__) :]

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (Job.loads, (self.dumps(),))


def raw_of(job: _StoredJob) -> tuple[str, list[str]] | None:
    """``(b, m values)`` while unparsed, else None (parsed, or made by ``dataclasses.replace``)."""
    try:
        body = object.__getattribute__(job, "_body")
    except AttributeError:
        return None
    if body is None:
        return None
    return body, object.__getattribute__(job, "_fields")


def _stored(
    body: str, fields: list[str], job_id: str, job_type: str, status: str, version: int
) -> Job:
    """A ``_StoredJob`` from its raw values and header."""
    job = _new_stored(_StoredJob)
    _set_body(job, body)
    _set_fields(job, fields)
    _set_id(job, job_id)
    _set_type(job, job_type)
    _set_status(job, _STATUS[status])
    _set_version(job, version)
    return job


# the slots' own setters: object.__setattr__ looks each one up again (0.67 -> 0.40 us a job)
_new_stored = _StoredJob.__new__
_set_body = _StoredJob._body.__set__  # type: ignore[attr-defined]
_set_fields = _StoredJob._fields.__set__  # type: ignore[attr-defined]
_set_id = Job.id.__set__  # type: ignore[attr-defined]
_set_type = Job.type.__set__  # type: ignore[attr-defined]
_set_status = Job.status.__set__  # type: ignore[attr-defined]
_set_version = Job.version.__set__  # type: ignore[attr-defined]


def stored_from_fields(body: str, f: list[str]) -> Job:
    """A lazily parsed job from a script's raw ``b`` and split ``m`` (see ``_StoredJob``).

    The header comes out of ``b`` by position: ``job_fields`` writes the id and
    the type first.
    """
    start = body.index(',"type":')
    id_text = body[5:start]
    end = body.index(',"priority":', start)
    type_text = body[start + 8 : end]
    return _stored(
        body,
        f,
        id_text[1:-1] if "\\" not in id_text else json.loads(id_text),
        type_text[1:-1] if "\\" not in type_text else json.loads(type_text),
        f[0],
        int(f[13]),
    )


def _created_text(body: str) -> str:
    """``created_at`` as the body holds it: the last field of that name that only
    numbers, null and strings follow, none of which can hold a raw quote."""
    at = body.rindex(',"created_at":') + 14
    return body[at : body.index(",", at)]


def record_parts(job: Job) -> tuple[str, str, str]:
    """A job's ``b``, ``m`` and created_at text for its Store record, encoded once."""
    if type(job) is _StoredJob:
        raw = raw_of(job)
        if raw is not None:
            return raw[0], SEP.join(raw[1]), _created_text(raw[0])
    body, fields = job_fields(job, job.status)
    return body, SEP.join(fields), num(job.created_at)


def split_reply(reply: bytes) -> list[bytes]:
    return reply.split(BSEP) if reply else []


def hash_tag(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"redis key prefix {prefix!r} must be non-empty and without braces")
    return "{" + prefix + "}:"


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
