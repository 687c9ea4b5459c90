"""Workflows: chains, groups and chords of jobs, submitted as one.

A workflow is a tree of three shapes, each member a job submission (a dict
as ``POST /api/v1/jobs`` takes, or ``ProcessorHandle.job(...)``) or another
workflow:

- ``{"chain": [a, b, c], "pass_results": true}``: each step depends on the
  one before (on all the exits of a group step) and, with ``pass_results``
  (the default), receives its results (``ctx.results``);
- ``{"group": [a, b, c]}``: run in parallel;
- ``{"chord": {"group": [a, b], "callback": c}}``: the callback depends on
  every member of the group and receives all their results, in order.

``build`` turns one into plain jobs with ``depends_on`` wired by position, in
an order where every job comes after the jobs it depends on, so the Broker
files them in one all-or-none enqueue and releases them itself
(``backends/dependencies.py``): a workflow needs no coordinator and survives
any node. Its id is its first job's id; that job carries ``workflow`` (the
kind and every member's id) and every member carries ``workflow_id``.
``view`` derives the workflow's state from its members.

A workflow's ``idempotency_key`` (top level) is its root job's: the Broker
files a workflow whose root's key it already holds as nothing at all and
hands back the holder (``Broker.enqueue``), so a retried submission is the
same workflow, with no second set of jobs, in the one atomic move.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .jobs import IdGenerator, Job, JobStatus, ValidationError
from .submission import SubmissionLimits, check_idempotency_key, validate_submission
from .text import clip

#: Most jobs in one workflow (a chord's callback depends on all of its group).
MAX_WORKFLOW_JOBS = 1000
#: Deepest nesting of chains, groups and chords.
MAX_WORKFLOW_DEPTH = 16
KINDS = ("chain", "group", "chord")
#: Fields a workflow's top level takes besides its shape.
OPTIONS = ("pass_results", "on_dependency_failure", "idempotency_key")


# -- building specs (the Python client's helpers) ----------------------------------------


def chain(*steps: Mapping[str, Any], pass_results: bool = True) -> dict[str, Any]:
    """A chain of jobs or workflows, each after the one before."""
    return {"chain": [dict(s) for s in steps], "pass_results": pass_results}


def group(*members: Mapping[str, Any]) -> dict[str, Any]:
    """Jobs or workflows run in parallel."""
    return {"group": [dict(m) for m in members]}


def chord(members: Sequence[Mapping[str, Any]], callback: Mapping[str, Any]) -> dict[str, Any]:
    """A group, then ``callback`` with all the group's results."""
    return {"chord": {"group": [dict(m) for m in members], "callback": dict(callback)}}


# -- from a spec to jobs ------------------------------------------------------------------


class _Builder:
    def __init__(
        self, now: float, limits: SubmissionLimits, ids: IdGenerator | None, on_failure: Any
    ) -> None:
        self.now = now
        self.limits = limits
        self.ids = ids
        self.on_failure = on_failure
        self.jobs: list[Job] = []

    def node(
        self, item: Any, path: str, parents: list[Job], receive: bool, depth: int
    ) -> list[Job]:
        """File ``item`` after ``parents``; returns its exits (what follows it depends on)."""
        if not isinstance(item, Mapping):
            raise ValidationError(f"{path} must be a job or a workflow object", path)
        if "type" in item:
            return [self.job(item, path, parents, receive)]
        if depth >= MAX_WORKFLOW_DEPTH:  # depth counts from 0: the top level is the first
            raise ValidationError(
                f"{path} nests workflows deeper than {MAX_WORKFLOW_DEPTH} levels", path
            )
        kind = self.kind(item, path, allowed=() if depth else OPTIONS)
        body = item[kind]
        if kind == "chord":
            if not isinstance(body, Mapping) or set(body) != {"group", "callback"}:
                raise ValidationError(
                    f'{path}.chord must be {{"group": [...], "callback": job}}', f"{path}.chord"
                )
            members = self.members(body["group"], f"{path}.chord.group")
            exits = [
                out
                for i, member in enumerate(members)
                for out in self.node(
                    member, f"{path}.chord.group[{i}]", parents, receive, depth + 1
                )
            ]
            return self.node(body["callback"], f"{path}.chord.callback", exits, True, depth + 1)
        members = self.members(body, f"{path}.{kind}")
        if kind == "group":
            return [
                out
                for i, member in enumerate(members)
                for out in self.node(member, f"{path}.group[{i}]", parents, receive, depth + 1)
            ]
        pass_results = item.get("pass_results", True)
        if not isinstance(pass_results, bool):
            raise ValidationError(
                f"{path}.pass_results must be true or false", f"{path}.pass_results"
            )
        exits = parents
        for i, step in enumerate(members):
            exits = self.node(
                step, f"{path}.chain[{i}]", exits, receive if i == 0 else pass_results, depth + 1
            )
        return exits

    @staticmethod
    def kind(item: Mapping[str, Any], path: str, allowed: Sequence[str]) -> str:
        kinds = [k for k in KINDS if k in item]
        if len(kinds) != 1:
            raise ValidationError(
                f"{path} must be a job (with a type) or exactly one of chain, group, chord",
                path,
            )
        extra = [k for k in item if k not in KINDS and k not in allowed and k != "pass_results"]
        if kinds[0] != "chain" and "pass_results" in item:
            extra.append("pass_results")
        if extra:
            raise ValidationError(f"{path} has the unknown field {clip(extra[0])}", path)
        return kinds[0]

    @staticmethod
    def members(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise ValidationError(f"{path} must be a non-empty array", path)
        return value

    def job(self, item: Mapping[str, Any], path: str, parents: list[Job], receive: bool) -> Job:
        for field in ("depends_on", "on_dependency_failure", "receive_results", "idempotency_key"):
            if field in item:
                raise ValidationError(
                    f"{path}.{field}: a workflow's members are wired by the workflow "
                    f"(depends_on, receive_results and on_dependency_failure by position and "
                    f"options; a member's idempotency_key could hand back a job outside it: "
                    f"give the workflow one, at its top level)",
                    f"{path}.{field}",
                )
        if len(self.jobs) >= MAX_WORKFLOW_JOBS:
            raise ValidationError(
                f"a workflow holds at most {MAX_WORKFLOW_JOBS} jobs", path, "too_many_jobs"
            )
        data = dict(item)
        if parents:
            data["depends_on"] = [p.id for p in parents]
            data["receive_results"] = receive
            if self.on_failure is not None:
                data["on_dependency_failure"] = self.on_failure
        try:
            job = validate_submission(data, self.now, self.limits, self.ids)
        except ValidationError as exc:
            where = f"{path}.{exc.field}" if exc.field else path
            raise ValidationError(f"{path}: {exc.message}", where, exc.code) from None
        self.jobs.append(job)
        return job


def build(
    spec: Any,
    now: float,
    limits: SubmissionLimits = SubmissionLimits(),
    ids: IdGenerator | None = None,
) -> list[Job]:
    """The jobs of a workflow spec, parents first; ``ValidationError`` names the culprit by
    its path (``workflow.chain[1].payload``)."""
    if not isinstance(spec, Mapping):
        raise ValidationError("a workflow must be a JSON object", None, "invalid_type")
    on_failure = spec.get("on_dependency_failure")
    if on_failure is not None and on_failure not in ("fail", "run"):
        raise ValidationError(
            f"on_dependency_failure must be 'fail' or 'run', got {clip(on_failure)}",
            "on_dependency_failure",
        )
    key = check_idempotency_key(spec.get("idempotency_key"))
    builder = _Builder(now, limits, ids, on_failure)
    kind = builder.kind(spec, "workflow", OPTIONS)
    builder.node(spec, "workflow", [], False, 0)
    jobs = builder.jobs
    root = jobs[0]
    root.workflow = {"kind": kind, "members": [j.id for j in jobs]}
    root.idempotency_key = key
    for job in jobs:
        job.workflow_id = root.id
    return jobs


# -- its state --------------------------------------------------------------------------


def status_of(members: Sequence[Job | None]) -> str:
    """``running`` until every member ended; then ``completed`` if all did, ``failed`` if
    any failed, else ``cancelled``. A member no longer held counts as ended unknown."""
    statuses = [m.status for m in members if m is not None]
    if any(not s.terminal for s in statuses):
        return "running"
    if all(s == JobStatus.COMPLETED for s in statuses) and len(statuses) == len(members):
        return "completed"
    if any(s == JobStatus.FAILED for s in statuses):
        return "failed"
    return "cancelled"


def view(root: Job, members: Mapping[str, Job]) -> dict[str, Any]:
    """The workflow as the API shows it: its state, counts by status and every member."""
    assert root.workflow is not None
    ids: list[str] = list(root.workflow.get("members") or [])
    found = [members.get(i) for i in ids]
    counts = Counter(str(m.status) for m in found if m is not None)
    return {
        "id": root.id,
        "kind": root.workflow.get("kind"),
        "status": status_of(found),
        "counts": dict(sorted(counts.items())),
        "members": ids,
        "jobs": [m.to_dict() for m in found if m is not None],
    }
