"""``jobtrio submit``: one job, or ``--count`` copies through the batch route, and ``--wait``.

The options are the API's submission fields; waiting shows the finished job (or
a summary of many) and exits 1 if any failed, so a script can chain on it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.text import Text

from ..client import Client, job_submission
from ..jobs import Job, JobStatus
from .exits import EXIT_FAILURE, EXIT_OK
from .output import err, out, print_json, progress
from .params import (
    AT,
    DURATION,
    MAX_RETRIES_OPTION,
    PAYLOAD_OPTION,
    PRIORITY_OPTION,
    TIMEOUT_OPTION,
    load_payload,
)
from .remote import Remote, remote_command
from .render import ago, finished_ok, short, show_job, status_text

#: Jobs per batch request when ``submit --count`` fans out (the API takes up to 10,000).
SUBMIT_CHUNK = 1000


@click.command()
@click.argument("job_type", metavar="TYPE")
@PAYLOAD_OPTION
@PRIORITY_OPTION
@click.option("--delay", type=DURATION, help="Run no earlier than this from now (10s, 5m).")
@click.option("--at", "at", type=AT, help="Run no earlier than this time (ISO 8601 or HH:MM).")
@MAX_RETRIES_OPTION
@TIMEOUT_OPTION
@click.option("--idempotency-key", metavar="KEY", help="Submitting the same key again is a no-op.")
@click.option("--queue", "-q", metavar="NAME", help="The named queue to wait in (default).")
@click.option(
    "--after",
    "depends_on",
    multiple=True,
    metavar="JOB_ID",
    help="Wait until this job has completed (repeat for several): depends_on.",
)
@click.option(
    "--receive-results", is_flag=True, help="With --after: hand the processor their results."
)
@click.option(
    "--on-dependency-failure",
    type=click.Choice(["fail", "run"]),
    help="With --after: what a failed or cancelled one does (default fail).",
)
@click.option(
    "--count", "-n", type=click.IntRange(1, 1_000_000), default=1, help="Submit N copies."
)
@click.option(
    "--wait", "-w", is_flag=True, help="Wait until the job(s) finish; exit 1 if any fail."
)
@click.option("--wait-timeout", type=DURATION, help="Give up waiting after this long (exit 1).")
@remote_command
def submit(
    remote: Remote,
    job_type: str,
    payload: str | None,
    priority: int | None,
    delay: float | None,
    at: dt.datetime | None,
    max_retries: int | None,
    timeout: float | None,
    idempotency_key: str | None,
    queue: str | None,
    depends_on: tuple[str, ...],
    receive_results: bool,
    on_dependency_failure: str | None,
    count: int,
    wait: bool,
    wait_timeout: float | None,
) -> int:
    """Submit a job of TYPE (or --count copies of it, through the batch route)."""
    if (receive_results or on_dependency_failure) and not depends_on:
        raise click.UsageError("--receive-results and --on-dependency-failure need --after")
    if delay is not None and at is not None:
        raise click.UsageError("give --delay or --at, not both")
    if count > 1 and idempotency_key:
        raise click.UsageError("--idempotency-key would make --count copies one job; drop one")
    if wait_timeout is not None and not wait:
        raise click.UsageError("--wait-timeout needs --wait")
    data = load_payload(payload)
    options: dict[str, Any] = {
        "priority": priority,
        "max_retries": max_retries,
        "timeout": timeout,
        "delay": delay,
        "scheduled_at": at,
        "idempotency_key": idempotency_key,
        "queue": queue,
        "depends_on": list(depends_on) or None,
        "on_dependency_failure": on_dependency_failure,
        "receive_results": receive_results or None,
    }
    with remote.client() as client:
        if count == 1:
            job = client.submit(job_type, data, **options)
            return _after_submit(remote, client, job, wait, wait_timeout)
        body = job_submission(job_type, data, **options)
        return _submit_many(remote, client, body, count, wait, wait_timeout)


def _after_submit(
    remote: Remote, client: Client, job: Job, wait: bool, wait_timeout: float | None
) -> int:
    if not wait:
        if remote.json:
            print_json(job.to_dict())
        else:
            when = f", runs {ago(job.scheduled_at)}" if job.status == JobStatus.SCHEDULED else ""
            out.print(
                Text.assemble(
                    "Submitted ",
                    (job.id, "bold"),
                    f" ({job.type}, priority {job.priority}, ",
                    status_text(job.status),
                    f"{when})",
                )
            )
        return EXIT_OK
    if not remote.json:
        err.print(f"Submitted {job.id}; waiting for it to finish…")
    job = client.wait(job.id, timeout=wait_timeout)
    if remote.json:
        print_json(job.to_dict())
    else:
        show_job(job)
    return EXIT_OK if finished_ok(job) else EXIT_FAILURE


def _submit_many(
    remote: Remote,
    client: Client,
    body: dict[str, Any],
    count: int,
    wait: bool,
    wait_timeout: float | None,
) -> int:
    jobs: list[Job] = []
    with progress("Submitting", count) as update:
        while len(jobs) < count:
            n = min(SUBMIT_CHUNK, count - len(jobs))
            jobs += client.submit_many([body] * n)
            update(len(jobs))
    summary: dict[str, Any] = {"count": len(jobs), "ids": [j.id for j in jobs]}
    if not wait:
        if remote.json:
            print_json(summary)
        else:
            out.print(f"Submitted {len(jobs)} {body['type']} jobs ({jobs[0].id} … {jobs[-1].id})")
        return EXIT_OK
    with progress("Finished", count) as update:
        done = client.wait_many(jobs, timeout=wait_timeout, on_progress=lambda d, _t: update(d))
    by_status: dict[str, int] = {}
    for job in done:
        by_status[str(job.status)] = by_status.get(str(job.status), 0) + 1
    summary["statuses"] = by_status
    failed = [j for j in done if not finished_ok(j)]
    if remote.json:
        print_json(summary)
    else:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        out.print(f"{len(done)} {body['type']} jobs finished: {parts}")
        if failed:
            out.print(Text(f"first failure: {failed[0].id}: {short(failed[0].error, 80)}"))
    return EXIT_FAILURE if failed else EXIT_OK
