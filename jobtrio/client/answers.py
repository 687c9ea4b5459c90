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
import orjson

from ..jobs import Job, job_from_answer
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
