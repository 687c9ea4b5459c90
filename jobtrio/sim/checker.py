"""The end-of-run judgement: Jepsen's queue accounting over the Broker and the Store.

Jepsen's total-queue checker sorts every element into ok, lost, duplicated
or unexpected. Here the elements are jobs, named by the idempotency key the
client gave them, and the Broker (the source of truth for a live job) and
the Store (the record) are read directly once the run is over:

* **lost**: a job the cluster acknowledged is in neither;
* **unfinished**: an acknowledged job is not terminal after the liveness
  drain (at-least-once means it must end, one way or another);
* **unexpected**: a job no client ever tried to submit, or a Store record
  the Broker does not hold;
* **duplicated**: two jobs for one idempotency key (a retried submission
  must return the original);
* a job ``cancelled`` that no client asked to cancel, or a job that can only
  fail by exhausting leases (``quick``, ``slow``) ending ``failed`` before
  its poison limit;
* **dependents released**: no job still ``waiting`` once every job it
  depends on ended (a dependent claimed before its parents completed, or
  after it completed itself, is judged at the claim, in :mod:`.backends`);
* **ticks**: every periodic tick the Broker claimed has exactly one job (its
  idempotency key ``schedule:<name>:<tick>``), never none and never two.

A job the leader purged (``FINISHED_JOB_TTL``) is judged by the status it had
when purged: it is not lost, and its Store record must show how it ended
(**store_has_every_job**: every job the Broker holds or purged has a record,
even one whose every snapshot died with its node's recorder: the leader
writes a finished job to the Store before it purges it).

Completions under two lease tokens, stale-epoch writes, writes with another
node's epoch, leases reaped early and the leases of a lent claim whose answer
was lost left to expire are judged as they happen, in
:mod:`.backends`; one vote and one leader per Raft term and a leader's
quorum in :mod:`.history`; a single leader after healing, in :mod:`.runner`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..jobs import JobStatus

if TYPE_CHECKING:
    from .runner import Simulation


def check_end(sim: Simulation) -> None:
    history = sim.history
    at = sim.ended_at
    broker = sim.broker.snapshot()
    purged = sim.broker.purged
    store = sim.store.view()  # the shared Store's records, through its test hook
    acked = history.acked()
    violate = history.violate
    poison = sim.settings_base.poison_limit

    for job_id, client_job in sorted(acked.items()):
        job = broker.get(job_id)
        if job is None and job_id in purged:
            continue  # it ended (only terminal jobs are purged); its record is checked below
        if job is None:
            where = "the Store" if job_id in store else "neither Broker nor Store"
            violate(
                "no_lost_jobs",
                at,
                f"acknowledged job {job_id} ({client_job.key}) is gone: in {where}",
            )
        elif not job.terminal:
            violate(
                "jobs_terminal",
                at,
                f"acknowledged job {job_id} ({client_job.key}, {job.type}) is still "
                f"{job.status} after the drain (attempts {len(job.attempts)}, "
                f"retries {job.retry_count}, lease expirations {job.lease_expirations})",
            )

    tick_keys = {sim.broker.tick_keys.get(tick) for tick in sim.broker.ticks}
    by_key: dict[str, list[str]] = {}
    for job_id, job in sorted(broker.items()):
        key = job.idempotency_key
        if key is not None and key in tick_keys:
            continue  # a periodic tick's job, judged below
        if key is None or key not in history.client_jobs:
            violate("no_unexpected_jobs", at, f"the Broker holds job {job_id} nobody submitted")
            continue
        by_key.setdefault(key, []).append(job_id)
        client_job = history.client_jobs[key]
        if client_job.acked_id is not None and client_job.acked_id != job_id:
            violate(
                "no_duplicate_jobs",
                at,
                f"{key} was acknowledged as {client_job.acked_id} but the Broker also "
                f"holds {job_id} for it",
            )
        if job.status == JobStatus.CANCELLED and not client_job.cancel_requested:
            violate("cancel_only_when_asked", at, f"job {job_id} ({key}) cancelled unasked")
        if (
            job.status == JobStatus.FAILED
            and job.type in ("quick", "slow")
            and job.lease_expirations < poison
            and not (job.depends_on and (job.error or "").startswith("dependency "))
        ):
            violate(
                "fail_only_by_rule",
                at,
                f"{job.type} job {job_id} ({key}) failed ({job.error}) with only "
                f"{job.lease_expirations} lease expirations",
            )
        if job.status == JobStatus.WAITING:
            parents = [broker.get(p) for p in job.depends_on]
            if all(
                (p is not None and p.terminal) or (p is None and pid in purged)
                for p, pid in zip(parents, job.depends_on, strict=True)
            ):
                violate(
                    "dependents_released",
                    at,
                    f"job {job_id} ({key}) still waits though every job it depends on ended",
                )
    for key, ids in sorted(by_key.items()):
        if len(ids) > 1:
            violate("no_duplicate_jobs", at, f"{key} is held {len(ids)} times: {', '.join(ids)}")

    for name, tick in sorted(sim.broker.ticks):
        key = sim.broker.tick_keys.get((name, tick))
        jobs = sim.broker.keys.get(key, []) if key is not None else []
        if len(jobs) != 1:
            violate(
                "tick_fires_once",
                at,
                f"schedule {name} tick {tick:.3f} was claimed and has {len(jobs)} jobs"
                + (f": {', '.join(jobs)}" if jobs else ""),
            )

    for job_id in sorted(store):
        if job_id not in broker and job_id not in purged:
            violate("no_unexpected_jobs", at, f"the Store holds job {job_id} the Broker does not")
    for job_id, status in sorted(purged.items()):
        record = store.get(job_id)
        if record is None:
            violate(
                "store_has_every_job",
                at,
                f"job {job_id} ended {status} and was purged, but no record of it ever "
                "reached the Store",
            )
        elif record.status != status:
            violate(
                "store_matches_broker",
                at,
                f"job {job_id} ended {status} and was purged but is {record.status} "
                f"(v{record.version}) in the Store",
            )
    for job_id, job in sorted(broker.items()):
        record = store.get(job_id)
        if record is None:
            violate(
                "store_has_every_job",
                at,
                f"job {job_id} is {job.status} (v{job.version}) in the Broker but no record "
                "of it ever reached the Store",
            )
        elif record.status != job.status:
            violate(
                "store_matches_broker",
                at,
                f"job {job_id} is {job.status} (v{job.version}) in the Broker but "
                + f"{record.status} (v{record.version}) in the Store",
            )
