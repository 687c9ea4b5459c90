"""The job routes: submit (one or a batch), list, get, cancel or purge, retry.

Status codes follow what the client can do next: 201 with a ``Location``
for something new, 404 for an id the cluster never had (or has forgotten),
409 when the job exists but its state forbids the move (the message says
which states allow it), 422 when the request is well-formed JSON that no job
could be made of.

Ownership: with auth on, a job records who submitted it, and a caller with
the ``user`` role sees, cancels and retries only its own jobs (``owner_scope``).
Another user's job answers exactly as an unknown id does (404), so job ids
are no oracle; a list is filtered in the Store's own query.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from ..backends.base import StateConflict
from ..backends.dependencies import UnknownDependency
from ..jobs import Job, JobStatus
from ..submission import MAX_DEPENDENCIES, SizedSubmissions
from .auth import Role, check_role, current_claims, owner_scope, require, submitter
from .batch_answer import batch_answer_body
from .context import MAX_BATCH_JOBS, batch_body_limit, current_node, job_body_limit
from .errors import ApiError, Conflict, NotFound, Unprocessable
from .jsonprovider import FastJSONProvider
from .parsing import (
    JOB_ID_RE,
    parse_bool,
    parse_job_query,
    read_json_object,
    read_json_object_sized,
    reject_unknown,
)

bp = Blueprint("jobs", __name__)

_CANCELLABLE = ", ".join(s.value for s in JobStatus if not s.terminal)


def _job_id(raw: str) -> str:
    """Ids are case-insensitive ULIDs; anything else cannot name a job."""
    job_id = raw.strip().upper()
    if not JOB_ID_RE.match(job_id):
        raise NotFound(f"no job with id {raw[:60]!r}")
    return job_id


def _unknown(job_id: str) -> NotFound:
    return NotFound(f"no job with id {job_id!r}")


def _visible(job: Job | None, scope: str | None) -> bool:
    """Whether the caller may see ``job``: it exists and, for a ``user``, is its own."""
    return job is not None and (scope is None or job.owner == scope)


async def _check_visible(job_id: str) -> None:
    """404 before a move on a job the caller may not see (another user's, or none)."""
    scope = owner_scope()
    if scope is not None and not _visible(await current_node().get(job_id), scope):
        raise _unknown(job_id)


def _not_taken(jobs: list[Job]) -> None:
    """409 when an idempotency key handed back another user's job (never shown to this one)."""
    scope = owner_scope()
    for i, job in enumerate(jobs):
        if scope is not None and job.owner != scope:
            where = "" if len(jobs) == 1 else f"job {i}: "
            raise Conflict(
                "idempotency_key_taken",
                f"{where}idempotency_key {job.idempotency_key!r} belongs to a job of another "
                "user; choose another key"
                + ("" if len(jobs) == 1 else " (the batch's other jobs were accepted)"),
            )


async def _check_dependencies(items: list[Any]) -> None:
    """A ``user`` may depend only on its own jobs (another's result would leak through
    ``receive_results``): another user's job is as unknown as a missing one (400).

    Each distinct id is read once, and a list longer than validation allows is left to it
    (its 422): a batch of lists repeating one id made one read per entry, 100,000 of them
    (23 s) before the 422 a node without auth gives at once."""
    scope = owner_scope()
    if scope is None:
        return
    node = current_node()
    seen: set[str] = set()
    for item in items:
        parents = item.get("depends_on") if isinstance(item, dict) else None
        if not isinstance(parents, list) or len(parents) > MAX_DEPENDENCIES:
            continue  # validation says what is wrong with it
        for parent in parents:
            if not isinstance(parent, str) or parent.upper() in seen:
                continue
            parent = parent.upper()
            seen.add(parent)
            if JOB_ID_RE.match(parent) and not _visible(await node.get(parent), scope):
                raise UnknownDependency("", parent)


def _created(body: Any, location: str | None = None) -> Response:
    response = jsonify(body)
    response.status_code = 201
    if location:
        response.headers["Location"] = location
    return response


@bp.post("/api/v1/jobs")
@require(Role.USER)
async def submit_job() -> Response:
    node = current_node()
    if request.query_string:  # the route takes no parameter (an empty query string has none)
        reject_unknown(request.args, ())
    data = await read_json_object(job_body_limit(node.settings))
    if current_claims() is None:  # no auth: no owner, no scope (the checks below are no-ops)
        job = await node.submit(data)
    else:
        await _check_dependencies([data])
        job = await node.submit(data, submitter())
        _not_taken([job])
    return _created(job.to_dict(), f"/api/v1/jobs/{job.id}")


@bp.post("/api/v1/jobs/batch")
@require(Role.USER)
async def submit_batch() -> Response:
    node = current_node()
    reject_unknown(request.args, ())
    data, size_bound = await read_json_object_sized(
        batch_body_limit(node.settings), node.settings.max_payload_bytes
    )
    for key in data:
        if key != "jobs":
            raise Unprocessable(
                "unknown_field", f'unknown field {key!r}; a batch is {{"jobs": [...]}}', key
            )
    if "jobs" not in data:
        raise Unprocessable("missing_field", 'a batch needs "jobs", an array of jobs', "jobs")
    items = data["jobs"]
    if not isinstance(items, list):
        raise Unprocessable("invalid_type", "jobs must be an array of job objects", "jobs")
    if not items:
        raise Unprocessable("empty_batch", "jobs is empty; send 1 to 10000 jobs", "jobs")
    if len(items) > MAX_BATCH_JOBS:
        raise ApiError(
            413,
            "too_many_jobs",
            f"a batch holds at most {MAX_BATCH_JOBS} jobs, got {len(items)}; split it",
            "jobs",
        )
    await _check_dependencies(items)
    if size_bound is not None:  # orjson read it: validation need not measure each payload
        items = SizedSubmissions(items, size_bound)
    answer = _BatchAnswer()
    jobs = await node.submit_many(items, submitter(), answer.prepare)
    _not_taken(jobs)
    return answer.response(jobs)


class _BatchAnswer:
    """A batch's answer, made while the Broker stores its jobs.

    ``prepare`` runs while the Broker works (``Node.submit_many``'s ``meanwhile``)
    and writes the answer as if every job were stored as sent; ``response`` uses it
    when each stored job is the very object validated (the Broker hands back another
    one for a job holding its key or changed), else writes the answer of the stored
    jobs now. Both write it from the jobs' fields (``batch_answer_body``), or, where
    that leaves it to the app's JSON provider, from their dicts as before."""

    __slots__ = ("sent", "prepared")

    def __init__(self) -> None:
        self.sent: list[Job] = []
        self.prepared: Response | None = None

    def prepare(self, jobs: list[Job]) -> None:
        self.sent = jobs
        self.prepared = _batch_created(jobs)

    def response(self, stored: list[Job]) -> Response:
        sent = self.sent
        if (
            self.prepared is not None
            and len(sent) == len(stored)
            and all(map(operator.is_, stored, sent))
        ):
            return self.prepared
        return _batch_created(stored)


def _batch_created(jobs: list[Job]) -> Response:
    """``_created({"jobs": [job.to_dict() ...], "count": ...})``, the same bytes."""
    provider = current_app.json
    compact = type(provider) is FastJSONProvider and (
        provider.compact or (provider.compact is None and not current_app.debug)
    )
    body = batch_answer_body(jobs) if compact else None
    if body is None:
        dicts = [job.to_dict() for job in jobs]
        return _created({"jobs": dicts, "count": len(dicts)})
    return current_app.response_class(  # type: ignore[no-any-return]
        body, status=201, mimetype=provider.mimetype
    )


@bp.get("/api/v1/jobs")
@require(Role.WORKER)
async def list_jobs() -> Response:
    query = parse_job_query(request.args)
    scope = owner_scope()
    if scope is not None:
        query = dataclasses.replace(query, owner=scope)
    page = await current_node().list(query)
    return jsonify(
        {
            "jobs": [job.to_dict() for job in page.jobs],
            "next_cursor": page.next_cursor,
            "count": len(page.jobs),
        }
    )


@bp.get("/api/v1/jobs/<job_id>")
@require(Role.WORKER)
async def get_job(job_id: str) -> Response:
    reject_unknown(request.args, ())
    job_id = _job_id(job_id)
    job = await current_node().get(job_id)
    if job is None or not _visible(job, owner_scope()):
        raise _unknown(job_id)
    return jsonify(job.to_dict())


@bp.delete("/api/v1/jobs/<job_id>")
@require(Role.USER)
async def cancel_job(job_id: str) -> Response:
    reject_unknown(request.args, ("purge",))
    purge = parse_bool(request.args, "purge")
    job_id = _job_id(job_id)
    node = current_node()
    if purge:
        await check_role(Role.ADMIN)  # deleting the record is an operator's call
        if not await node.purge(job_id):
            raise NotFound(f"no job with id {job_id!r}")
        return jsonify({"id": job_id, "deleted": True})
    await _check_visible(job_id)
    try:
        job = await node.cancel(job_id)
    except StateConflict as exc:
        raise Conflict(
            "job_finished",
            f"job {job_id} is already {exc.job.status}; only {_CANCELLABLE} jobs can be "
            "cancelled (add ?purge=true to delete its record)",
        ) from None
    return jsonify(job.to_dict())


@bp.post("/api/v1/jobs/<job_id>/retry")
@require(Role.USER)
async def retry_job(job_id: str) -> Response:
    reject_unknown(request.args, ())
    job_id = _job_id(job_id)
    await _check_visible(job_id)
    try:
        job = await current_node().retry(job_id)
    except StateConflict as exc:
        raise Conflict(
            "not_retryable",
            f"job {job_id} is {exc.job.status}; only failed or cancelled jobs can be retried",
        ) from None
    return jsonify(job.to_dict())
