"""What the clients send: each request described once, apart from the I/O.

``Client`` and ``AsyncClient`` differ only in how they wait for the answer;
the route, query and body of every call are built here (``Calls``), with the
JSON of a job or a schedule (``job_submission``, ``schedule_submission``),
so the two cannot drift apart and the bodies can be built, and tested,
without a node.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..jobs import Job

#: The most jobs one ``submit_many`` may carry: the node refuses a larger batch.
MAX_BATCH = 10_000
#: The header of a body written by ``request_body`` (httpx's ``json=`` sets the same).
JSON_BODY = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Call:
    """One request, described apart from the I/O that sends it, so that ``Client`` and
    ``AsyncClient`` send the very same one."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    #: Statuses whose body is returned rather than raised (readiness probes).
    accept: tuple[int, ...] = ()


Time = dt.datetime | str | float | int


def _time(value: Time) -> str | float:
    """A time for the wire; naive datetimes are UTC, as on the server."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def rate_limit_body(jobs: int, per: float | dt.timedelta | str | None) -> dict[str, Any]:
    """A rate limit's body; a missing or wrongly typed ``per`` is a ``TypeError`` naming it
    (``None`` was ``float() argument must be ... not 'NoneType'``)."""
    if isinstance(per, str):
        return {"jobs": jobs, "per": per}
    if per is None:
        raise TypeError(
            "per is missing: the interval the jobs are allowed in (seconds, a "
            "timedelta, or text such as '10s')"
        )
    if isinstance(per, bool) or not isinstance(per, int | float | dt.timedelta):
        raise TypeError(
            f"per must be seconds, a timedelta or text such as '10s', not {type(per).__name__}"
        )
    return {"jobs": jobs, "per": _seconds(per)}


def job_submission(
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    priority: int | None = None,
    max_retries: int | None = None,
    timeout: float | dt.timedelta | None = None,
    delay: float | dt.timedelta | None = None,
    scheduled_at: Time | None = None,
    idempotency_key: str | None = None,
    queue: str | None = None,
    depends_on: Iterable[str | Job] | None = None,
    on_dependency_failure: str | None = None,
    receive_results: bool | None = None,
) -> dict[str, Any]:
    """The JSON of one job; ``delay`` becomes ``scheduled_at`` from this machine's clock."""
    if delay is not None and scheduled_at is not None:
        raise ValueError("give delay or scheduled_at, not both")
    body: dict[str, Any] = {"type": type}
    if payload is not None:
        body["payload"] = dict(payload)
    if priority is not None:
        body["priority"] = priority
    if max_retries is not None:
        body["max_retries"] = max_retries
    if timeout is not None:
        body["timeout"] = _seconds(timeout)
    if delay is not None:
        body["scheduled_at"] = _time(time.time() + _seconds(delay))
    elif scheduled_at is not None:
        body["scheduled_at"] = _time(scheduled_at)
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if queue is not None:
        body["queue"] = queue
    if depends_on is not None:
        body["depends_on"] = [d.id if isinstance(d, Job) else d for d in depends_on]
    if on_dependency_failure is not None:
        body["on_dependency_failure"] = on_dependency_failure
    if receive_results is not None:
        body["receive_results"] = receive_results
    return body


def schedule_submission(
    name: str,
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    cron: str | None = None,
    every: str | float | dt.timedelta | None = None,
    priority: int | None = None,
    max_retries: int | None = None,
    timeout: float | dt.timedelta | None = None,
    enabled: bool = True,
    misfire_grace: float | dt.timedelta | None = None,
) -> dict[str, Any]:
    """The JSON of one schedule; ``every`` is a duration (``"30s"``) or seconds.

    Refusing cron and every together here, rather than waiting for the node's
    422, points at the calling line instead of at a server answer.
    """
    if (cron is None) == (every is None):
        raise ValueError("give exactly one of cron or every")
    job = job_submission(type, payload, priority=priority, max_retries=max_retries, timeout=timeout)
    body: dict[str, Any] = {"name": name, "job": job}
    if cron is not None:
        body["cron"] = cron
    else:
        body["every"] = _seconds(every) if isinstance(every, dt.timedelta) else every
    body["enabled"] = enabled
    if misfire_grace is not None:
        body["misfire_grace"] = _seconds(misfire_grace)
    return body


def list_params(
    status: str | Iterable[str] | None,
    type: str | None,
    created_after: Time | None,
    created_before: Time | None,
    limit: int,
    cursor: str | None,
    queue: str | None = None,
) -> dict[str, str]:
    """The query of a job listing, for both clients' ``list_page``: filters left out
    rather than sent empty."""
    params: dict[str, str] = {"limit": str(limit)}
    if queue is not None:
        params["queue"] = queue
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(map(str, status))
    if type:
        params["type"] = type
    if created_after is not None:
        params["created_after"] = str(_time(created_after))
    if created_before is not None:
        params["created_before"] = str(_time(created_before))
    if cursor:
        params["cursor"] = cursor
    return params


def _segment(value: str) -> str:
    """``value`` as one path segment, whatever it holds.

    An id read from a file or a shell is not trusted to be one: unquoted, ``../schedules/x``
    would reach (and ``jobs cancel`` would delete) another resource, since the URL's dot
    segments are resolved before sending, and a control character is no URL at all. Dots are
    quoted too so ``..`` stays a segment; the node then answers 404 for an id it never held.
    """
    return urllib.parse.quote(value, safe="").replace(".", "%2E")


class Calls:
    """Every request the clients make, described once."""

    @staticmethod
    def submit(body: dict[str, Any]) -> Call:
        return Call("POST", "/api/v1/jobs", json=body)

    @staticmethod
    def submit_many(items: Iterable[Mapping[str, Any]]) -> Call:
        # a dict as it is (httpx writes the body as it builds the request), another mapping copied
        jobs = [i if type(i) is dict else dict(i) for i in items]
        return Call("POST", "/api/v1/jobs/batch", json={"jobs": jobs})

    @staticmethod
    def get(job_id: str) -> Call:
        return Call("GET", f"/api/v1/jobs/{_segment(job_id)}")

    @staticmethod
    def cancel(job_id: str, purge: bool = False) -> Call:
        return Call(
            "DELETE", f"/api/v1/jobs/{_segment(job_id)}", {"purge": "true"} if purge else {}
        )

    @staticmethod
    def retry(job_id: str) -> Call:
        return Call("POST", f"/api/v1/jobs/{_segment(job_id)}/retry")

    @staticmethod
    def submit_workflow(spec: Mapping[str, Any], idempotency_key: str | None) -> Call:
        body = dict(spec)
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return Call("POST", "/api/v1/workflows", json=body)

    @staticmethod
    def get_workflow(workflow_id: str) -> Call:
        return Call("GET", f"/api/v1/workflows/{_segment(workflow_id)}")

    @staticmethod
    def cancel_workflow(workflow_id: str) -> Call:
        return Call("DELETE", f"/api/v1/workflows/{_segment(workflow_id)}")

    @staticmethod
    def list_page(params: dict[str, str]) -> Call:
        return Call("GET", "/api/v1/jobs", params)

    @staticmethod
    def view(path: str, accept: tuple[int, ...] = ()) -> Call:
        return Call("GET", path, accept=accept)

    @staticmethod
    def schedules() -> Call:
        return Call("GET", "/api/v1/schedules")

    @staticmethod
    def queue(method: str, name: str | None = None, action: str = "", json: Any = None) -> Call:
        path = "/api/v1/queues"
        if name is not None:
            path += "/" + _segment(name)
        return Call(method, path + action, json=json)

    @staticmethod
    def schedule(method: str, name: str) -> Call:
        return Call(method, f"/api/v1/schedules/{_segment(name)}")

    @staticmethod
    def add_schedule(body: dict[str, Any]) -> Call:
        return Call("POST", "/api/v1/schedules", json=body)

    @staticmethod
    def elections(limit: int) -> Call:
        return Call("GET", "/api/v1/elections", {"limit": str(limit)})
