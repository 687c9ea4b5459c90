"""``jobtrio jobs list|get|cancel|retry|watch``: one job or many, as a node has them.

``watch`` follows changes and is long enough to be its own module (watch.py);
the group adds it here so ``jobs`` is whole wherever it is imported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import click
from rich.text import Text

from .exits import EXIT_OK
from .output import err, out, print_json
from .params import NAME, job_filter_options, parse_statuses
from .remote import Remote, remote_command
from .render import jobs_table, show_job, status_text
from .watch import watch


@click.group()
def jobs() -> None:
    """List, inspect, cancel, retry and watch jobs."""


@jobs.command("list")
@job_filter_options
@click.option("--queue", "-q", help="Only jobs of this named queue.")
@click.option("--limit", "-l", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@remote_command
def list_jobs(
    remote: Remote,
    status: Sequence[str],
    job_type: str | None,
    created_after: dt.datetime | None,
    created_before: dt.datetime | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
) -> int:
    """List jobs, newest first."""
    filters: dict[str, Any] = {
        "status": parse_statuses(status),
        "type": job_type,
        "queue": queue,
        "created_after": created_after,
        "created_before": created_before,
    }
    with remote.client() as client:
        if all_pages:
            found = list(client.list(**filters, page_size=1000))
            next_cursor = None
        else:
            page = client.list_page(**filters, limit=limit, cursor=cursor)
            found, next_cursor = page.jobs, page.next_cursor
    if remote.json:
        print_json(
            {"jobs": [j.to_dict() for j in found], "next_cursor": next_cursor, "count": len(found)}
        )
        return EXIT_OK
    if not found:
        err.print("No jobs.")
        return EXIT_OK
    out.print(jobs_table(found))
    if next_cursor:
        err.print(Text(f"more: jobtrio jobs list --cursor {next_cursor}  (or --all)", style="dim"))
    return EXIT_OK


@jobs.command("get")
@click.argument("job_id", type=NAME)
@remote_command
def get_job(remote: Remote, job_id: str) -> int:
    """Show one job with its attempts."""
    with remote.client() as client:
        job = client.get(job_id)
    if remote.json:
        print_json(job.to_dict())
    else:
        show_job(job)
    return EXIT_OK


@jobs.command("cancel")
@click.argument("job_id", type=NAME)
@click.option("--purge", is_flag=True, help="Also delete the job and its record.")
@remote_command
def cancel_job(remote: Remote, job_id: str, purge: bool) -> int:
    """Cancel a waiting or running job."""
    with remote.client() as client:
        if purge:
            client.purge(job_id)
            if remote.json:
                print_json({"id": job_id, "deleted": True})
            else:
                out.print(f"Deleted {job_id}.")
            return EXIT_OK
        job = client.cancel(job_id)
    if remote.json:
        print_json(job.to_dict())
    else:
        out.print(Text.assemble("Job ", (job.id, "bold"), " is ", status_text(job.status), "."))
    return EXIT_OK


@jobs.command("retry")
@click.argument("job_id", type=NAME)
@remote_command
def retry_job(remote: Remote, job_id: str) -> int:
    """Run a failed or cancelled job again."""
    with remote.client() as client:
        job = client.retry(job_id)
    if remote.json:
        print_json(job.to_dict())
    else:
        out.print(
            Text.assemble("Job ", (job.id, "bold"), " is ", status_text(job.status), " again.")
        )
    return EXIT_OK


jobs.add_command(watch)
