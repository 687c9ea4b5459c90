"""What the clients make of a node's answers: JSON read fast, jobs, pages and workflows
typed, failures raised as the ``errors`` family.

Both clients hand every answer to the readers here, so a sync and an async
call of the same method return the same thing, and an answer that is no JSON,
no job or no workflow is a ``JobtrioError`` saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import orjson

from ..jobs import (
    WIRE_KEYS,
    Job,
    JobStatus,
    job_from_answer,
    job_from_wire_values,
    jobs_from_checked_rows,
)
from ..jsontext import orjson_exact
from .calls import Call
from .errors import JobtrioError, error_from_response


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``list_page``; pass ``next_cursor`` back for the next (older) page."""

    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow as ``submit_workflow``, ``get_workflow`` and ``cancel_workflow`` answer.

    ``status`` is ``running`` until every member ended, then ``completed``,
    ``failed`` or ``cancelled``; ``jobs`` are its members in submission order.
    """

    id: str
    kind: str
    status: str
    counts: dict[str, int]
    members: list[str]
    jobs: list[Job]

    @property
    def terminal(self) -> bool:
        return self.status != "running"


def workflow_of(data: Any) -> Workflow:
    """A workflow's answer as a ``Workflow``; anything else is a ``JobtrioError``, not a
    ``KeyError`` from deep inside the client."""
    try:
        return Workflow(
            id=data["id"],
            kind=data["kind"],
            status=data["status"],
            counts=dict(data["counts"]),
            members=list(data["members"]),
            jobs=[job_of(j) for j in data["jobs"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JobtrioError(f"the node sent something that is not a workflow: {exc}") from None


def job_of(data: Any) -> Job:
    """A job's answer as the node's own ``Job``; anything else is a ``JobtrioError``, not
    a ``KeyError`` from deep inside the client."""
    try:
        return job_from_answer(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise JobtrioError(f"the node sent something that is not a job: {exc}") from None


def page_of(data: Any) -> JobPage:
    return JobPage([job_of(j) for j in data["jobs"]], data.get("next_cursor"))


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON: orjson reads a batch's 700 kB four times faster than ``json``;
    what it refuses (NaN) or would read otherwise (an integer past 64 bits, which it
    makes a float: see ``orjson_exact``) goes to ``response.json()`` as before."""
    content = response.content
    if orjson_exact(content):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return response.json()


def read_answer(response: httpx.Response, call: Call) -> Any:
    """The JSON of a success (or of a status the call accepts), else the error it means:
    the one reader of both clients, so they answer alike."""
    if response.is_success or response.status_code in call.accept:
        try:
            return json_of(response)
        except ValueError:
            raise JobtrioError(
                f"{response.request.url} answered without JSON; is it a jobtrio node?",
                status=response.status_code,
            ) from None
    raise error_from_response(response)


#: A job of an answer as the fast reading takes it: exactly ``to_dict``'s keys, each
#: required, any other refused (the reading then falls back), values as JSON gives them.
#: Not tracked by the garbage collector: it holds decoded JSON, which has no cycles.
_WireJob = msgspec.defstruct(
    "_WireJob", [(key, Any) for key in WIRE_KEYS], forbid_unknown_fields=True, gc=False
)
#: An answer holding jobs (a batch's, a page's); its other fields are not read here.
_JobsAnswer = msgspec.defstruct(
    "_JobsAnswer",
    [("jobs", list[_WireJob]), ("next_cursor", Any, None)],  # type: ignore[valid-type]
    gc=False,
)
_read_jobs_answer = msgspec.json.Decoder(_JobsAnswer).decode
#: A row's values in ``WIRE_KEYS`` order (its fields' order): read from its slots in one C
#: call, where ``operator.attrgetter(*WIRE_KEYS)`` looked each of the 31 names up on the
#: type (callgrind, a batch of 1,000: figures in the commit).
_row_values = msgspec.structs.astuple
if _WireJob.__struct_fields__ != WIRE_KEYS:
    raise ImportError("the client's answer rows hold their values in another order than WIRE_KEYS")

#: The kinds ``jobs_from_checked_rows`` takes as checked (see there); any other key
#: ``Any``. msgspec checks them while it reads: a status no ``JobStatus`` spells, a bool
#: or a float for an integer, a number for a time, a list that is null... refuses the
#: answer, which is then read by the untyped rows above, as before.
_CHECKED_KINDS: dict[str, Any] = {
    "priority": int,
    "status": JobStatus,
    "created_at": str | None,
    "updated_at": str | None,
    "scheduled_at": str | None,
    "started_at": str | None,
    "completed_at": str | None,
    "retry_count": int,
    "max_retries": int,
    "attempts": list[Any],
    "lease_expirations": int,
    "depends_on": list[Any],
    "waiting_for": list[Any],
    "dependents": list[Any],
    "version": int,
}
#: A job of an answer with those kinds checked as msgspec reads it (no call a job).
_CheckedJob = msgspec.defstruct(
    "_CheckedJob",
    [(key, _CHECKED_KINDS.get(key, Any)) for key in WIRE_KEYS],
    forbid_unknown_fields=True,
    gc=False,
)
_CheckedJobsAnswer = msgspec.defstruct(
    "_CheckedJobsAnswer",
    [("jobs", list[_CheckedJob]), ("next_cursor", Any, None)],  # type: ignore[valid-type]
    gc=False,
)
_read_checked_answer = msgspec.json.Decoder(_CheckedJobsAnswer).decode
if _CheckedJob.__struct_fields__ != WIRE_KEYS:
    raise ImportError("the client's checked rows hold their values in another order than WIRE_KEYS")


def _not_a_job(exc: Exception) -> JobtrioError:
    return JobtrioError(f"the node sent something that is not a job: {exc}")


def _checked_jobs(response: httpx.Response) -> tuple[list[Job], Any] | None:
    """``_fast_jobs`` of an answer whose jobs all have the kinds a node writes
    (``_CHECKED_KINDS``), read with those kinds checked by msgspec and each job built
    without a call (``jobs_from_checked_rows``); None for any other answer.

    Why: in the client's CPU a job of ``submit_many``, building each job from its row
    of untyped values cost about twice msgspec's reading of it (callgrind, a batch of
    1,000: figures in the commit). Every answer that reading refuses, the slower
    one reads as before (``_fast_jobs``), which keeps every odd answer's outcome."""
    try:
        answer = _read_checked_answer(response.content)
    except (msgspec.DecodeError, RecursionError):  # DecodeError: its ValidationError too
        return None
    try:
        jobs = jobs_from_checked_rows(answer.jobs, _row_values)
    except (KeyError, TypeError, ValueError) as exc:
        raise _not_a_job(exc) from None
    return jobs, answer.next_cursor


def _fast_jobs(response: httpx.Response) -> tuple[list[Job], Any] | None:
    """The jobs and ``next_cursor`` of a successful answer read by msgspec into rows, or
    None for any answer that reading refuses, which the caller then reads as before.

    Why: the client's time per job of ``submit_many`` was mostly reading the answer,
    a dict of 31 keys a job (orjson) then the job from it; msgspec reads each job
    straight into a row of its values, with no dict (callgrind, a batch of 1,000:
    figures in the commit). Only an answer shaped exactly as a node writes it is read
    this way: valid UTF-8 JSON, ``jobs`` a list of objects holding exactly
    ``to_dict``'s keys; a lone surrogate escape, a NaN, a number past a float's range,
    a missing or an extra key, a value nested some 1,000 levels deep (msgspec's
    ``RecursionError``; orjson reads 1,024), anything else is refused and read as
    before. What it accepts it reads as ``json.loads`` does (a repeated key keeps its
    last value, an integer past 64 bits stays exact), and each row becomes a job as
    ``job_from_answer`` makes one of the same dict, raising what it raises.

    An answer whose values all have the kinds a node writes is read by
    ``_checked_jobs`` first, faster."""
    checked = _checked_jobs(response)
    if checked is not None:
        return checked
    try:
        answer = _read_jobs_answer(response.content)
    except (msgspec.DecodeError, RecursionError):  # DecodeError: its ValidationError too
        return None
    try:
        jobs = [job_from_wire_values(_row_values(row)) for row in answer.jobs]
    except (KeyError, TypeError, ValueError) as exc:
        raise _not_a_job(exc) from None
    return jobs, answer.next_cursor


def read_jobs(response: httpx.Response, call: Call) -> list[Job]:
    """``[job_of(j) for j in read_answer(response, call)["jobs"]]``: a batch's jobs."""
    if response.is_success:
        fast = _fast_jobs(response)
        if fast is not None:
            return fast[0]
    return [job_of(j) for j in read_answer(response, call)["jobs"]]


def read_page(response: httpx.Response, call: Call) -> JobPage:
    """``page_of(read_answer(response, call))``: a page of ``list_page``."""
    if response.is_success:
        fast = _fast_jobs(response)
        if fast is not None:
            return JobPage(*fast)
    return page_of(read_answer(response, call))
