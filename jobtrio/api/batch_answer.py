"""A batch's answer written from its jobs' fields, without a dict of 31 keys a job.

Why: ``{"jobs": [job.to_dict() for job in jobs], "count": n}`` written by orjson cost
29.0k instructions a job of a batch of 1,000 (callgrind): most of it building each
job's dict (31 inserts, each key hashed and placed) and orjson walking it again. Here
each job becomes a row of its values (a msgspec struct made in one C call, its keys
known to the encoder beforehand) and msgspec writes the rows: 29.0k -> 15.5k a job.

The text is the app's JSON provider's (``jsonprovider``), which is the stdlib's, byte
for byte, or this writes nothing and the caller answers as before:

- msgspec writes a float past 1e16 as ``1e16`` where the stdlib writes ``1e+16``: the
  values that may hold any JSON (payload, result, progress, dependency results,
  workflow) are written by orjson (``msgspec.Raw``), which writes them as the provider
  did, and ``timeout``, the one float field, is written by msgspec only below 1e15
  (msgspec and the stdlib write every such float alike);
- text outside ASCII or with DEL (0x7f): Quart escapes them, so such an answer is left
  to the provider, which hands it to the stdlib, as it did;
- what orjson refuses (an integer past 64 bits, a type JSON has no word for) is left to
  the provider too, which writes it as it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from ..jobs import ISO_TEXTS, WIRE_KEYS, Job, JobStatus, to_iso

#: A job of the answer: its values in ``WIRE_KEYS`` order (``to_dict``'s), untyped.
#: Not tracked by the garbage collector: it lives while the answer is written.
_Row = msgspec.defstruct("_Row", [(key, Any) for key in WIRE_KEYS], gc=False)
_Answer = msgspec.defstruct("_Answer", [("jobs", list), ("count", int)], gc=False)
_encode = msgspec.json.Encoder().encode
_dumps = orjson.dumps
_Raw = msgspec.Raw
#: orjson's writing of a value that may hold any JSON, as the provider writes it.
_ANY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_EMPTY = _Raw(b"{}")
_NO_LIST = _Raw(b"[]")
#: Below this a float is written alike by msgspec and by the stdlib (``repr``).
_PLAIN_FLOAT = 1e15
_STATUS_TEXT = {s: str(s) for s in JobStatus}

if tuple(Job("", "").to_dict()) != WIRE_KEYS:
    raise ImportError("Job.to_dict writes its keys in another order than WIRE_KEYS")


def _refuse(value: Any) -> Any:
    raise TypeError(f"left to the stdlib encoder: {type(value).__name__}")


def _any(value: Any) -> Any:
    """A value that may hold any JSON, as orjson writes it (``{}`` and None as constants)."""
    if value is None:
        return None
    if type(value) is dict and not value:
        return _EMPTY
    return _Raw(_dumps(value, default=_refuse, option=_ANY_OPTIONS))


def _row(job: Job) -> Any:
    """``job.to_dict()`` as a row of the same values in the same order (``_any`` called
        only where a value is not None, and ``to_iso`` only for a time its memory does not hold,
    as ``to_dict`` does: a call is some 300 instructions, ten of them a job)."""
    texts = ISO_TEXTS
    timeout = job.timeout
    if timeout is not None and not (
        type(timeout) is float and -_PLAIN_FLOAT < timeout < _PLAIN_FLOAT
    ):
        timeout = _any(timeout)
    attempts = job.attempts
    status = job.status
    return _Row(
        job.id,
        job.type,
        job.priority,
        _Raw(_dumps(v, default=_refuse, option=_ANY_OPTIONS)) if (v := job.payload) else _any(v),
        _STATUS_TEXT.get(status) or str(status),
        texts.get(t := job.created_at) or to_iso(t),
        texts.get(t := job.updated_at) or to_iso(t),
        None if (t := job.scheduled_at) is None else texts.get(t) or to_iso(t),
        None if (t := job.started_at) is None else to_iso(t),
        None if (t := job.completed_at) is None else to_iso(t),
        job.retry_count,
        job.max_retries,
        timeout,
        None if (v := job.result) is None else _any(v),
        job.error,
        job.node_id,
        job.worker_id,
        _any([a.to_dict() for a in attempts]) if attempts else _NO_LIST,
        job.idempotency_key,
        job.lease_expirations,
        None if (v := job.progress) is None else _any(v),
        job.depends_on,
        job.on_dependency_failure,
        job.waiting_for,
        job.dependents,
        None if (v := job.dependency_results) is None else _any(v),
        job.workflow_id,
        None if (v := job.workflow) is None else _any(v),
        job.version,
        job.owner,
        job.queue,
    )


def batch_answer_body(jobs: Sequence[Job]) -> bytes | None:
    """The provider's body of ``{"jobs": [job.to_dict() ...], "count": len(jobs)}``
    (compact, a newline at its end), or None where the provider must write it."""
    try:
        rows = [_row(job) for job in jobs]
        body = _encode(_Answer(rows, len(rows)))
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return None
    if not body.isascii() or b"\x7f" in body:
        return None
    return body + b"\n"
