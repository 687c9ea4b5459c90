"""Job dependencies as pure moves over the jobs a Broker holds.

A job submitted with ``depends_on`` is ``waiting`` until every job it names
has completed. The Broker keeps the graph in the jobs themselves: a child
lists what it still waits for (``waiting_for``), a parent lists its children
(``dependents``). Both directions change only inside the Broker's own atomic
moves:

- ``attach``, when a child is inserted: each parent still running or waiting
  gets the child in its ``dependents``; a parent already ended settles at once
  (completed: one less to wait for; failed or cancelled: the child fails,
  naming it, unless it asked to ``run`` anyway). A parent the Broker never
  held (no job, no tombstone) is refused before anything is inserted.
- ``release``, in the very move that ends a parent (finish, cancel, the
  poison limit, a delete): each child still waiting for it settles; a child
  failed this way ends too, so its own children are released in the same
  move. A child leaves ``waiting`` once, guarded by its status and its
  ``waiting_for``, so no failover, retried reply or second finish can release
  it twice; and no parent can end without the move that releases its
  children, so none is left waiting.

The memory and SQLite Brokers run these functions on their ``Job`` objects
through a ``JobTable``; the Redis Broker does the same in Lua
(``redis/lua/dependencies.lua``) and the contract suite holds them to one
behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..jobs import Job, JobStatus
from .base import Tombstone
from .transitions import waiting_status

#: The error of a job whose dependency failed or was cancelled (``fail`` mode).
DEPENDENCY_ERROR = "dependency {id} {status}"


class UnknownDependency(LookupError):
    """A submitted job depends on a job the Broker does not know."""

    def __init__(self, job_id: str, dependency: str) -> None:
        super().__init__(f"depends_on names {dependency}, which is not a known job")
        self.job_id = job_id
        self.dependency = dependency


class JobTable(Protocol):
    """The Broker's jobs as ``attach`` and ``release`` see them."""

    def job(self, job_id: str) -> Job | None:
        """The held job (the Broker's own object, changed in place), or None."""

    def tombstone(self, job_id: str) -> Tombstone | None:
        """How a purged job ended, or None."""

    def changed(self, job: Job, refile: bool) -> None:
        """``job`` was changed; ``refile``: its status changed, file it anew."""


def check_known(jobs: Sequence[Job], table: JobTable) -> None:
    """Refuse the batch (``UnknownDependency``) if a job depends on an unknown one.

    A job may depend on one earlier in the same batch (a workflow's members
    arrive in one enqueue, parents first).
    """
    batch: set[str] = set()
    for job in jobs:
        for parent in job.depends_on:
            if (
                parent not in batch
                and table.job(parent) is None
                and table.tombstone(parent) is None
            ):
                raise UnknownDependency(job.id, parent)
        batch.add(job.id)


def attach(job: Job, table: JobTable, now: float) -> None:
    """Resolve a job being inserted against its parents as they stand now.

    Sets the job's status (``waiting``, or due if every parent completed, or
    ``failed`` if one failed) before the caller files it.
    """
    if not job.depends_on or job.terminal:
        return
    job.waiting_for = []
    if job.dependency_results is not None:
        job.dependency_results = {}
    for parent_id in job.depends_on:
        parent = table.job(parent_id)
        if parent is not None and not parent.terminal:
            if job.id not in parent.dependents:
                parent.dependents = [*parent.dependents, job.id]
                parent.touch(now)
                table.changed(parent, False)
            job.waiting_for = [*job.waiting_for, parent_id]
            continue
        if parent is not None:
            status, result = parent.status, parent.result
        else:
            tomb = table.tombstone(parent_id)
            status, result = (tomb.status if tomb else JobStatus.CANCELLED), None
        job.waiting_for = [*job.waiting_for, parent_id]
        _settle(job, parent_id, status, result, now)
        if job.terminal:
            return
    if not job.waiting_for:
        job.status = waiting_status(job, now)
    else:
        job.status = JobStatus.WAITING


def release(parent: Job, table: JobTable, now: float, status: JobStatus | None = None) -> list[Job]:
    """Settle the children of ``parent``, which just ended (``status`` overrides its own,
    e.g. cancelled for a deleted job); returns every job changed, cascades included."""
    changed: list[Job] = []
    work: list[tuple[str, JobStatus, Any, list[str]]] = [
        (parent.id, status or parent.status, parent.result, parent.dependents)
    ]
    while work:
        parent_id, parent_status, result, children = work.pop()
        for child_id in children:
            child = table.job(child_id)
            if (
                child is None
                or child.status != JobStatus.WAITING
                or parent_id not in child.waiting_for
            ):
                continue  # already settled: released once, never twice
            _settle(child, parent_id, parent_status, result, now)
            if child.status == JobStatus.WAITING and not child.waiting_for:
                child.status = waiting_status(child, now)
            child.touch(now)
            table.changed(child, True)
            changed.append(child)
            if child.terminal and child.dependents:
                work.append((child.id, child.status, None, child.dependents))
    return changed


def _settle(child: Job, parent_id: str, status: JobStatus, result: Any, now: float) -> None:
    """One parent of ``child`` ended with ``status``: one less to wait for, or a failure."""
    child.waiting_for = [p for p in child.waiting_for if p != parent_id]
    if status == JobStatus.COMPLETED or child.on_dependency_failure == "run":
        if child.dependency_results is not None:
            value = result if status == JobStatus.COMPLETED else None
            child.dependency_results = {**child.dependency_results, parent_id: value}
        return
    child.status = JobStatus.FAILED
    child.error = DEPENDENCY_ERROR.format(id=parent_id, status=status)
    child.completed_at = now
    child.waiting_for = []
