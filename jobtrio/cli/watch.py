"""``jobtrio jobs watch``: follow one job until it ends, or new jobs and their changes.

Changes come live over the node's event stream (/api/v1/events); against a node
without one the command polls every --interval. Both ways print one line a
change (JSON Lines with --json).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from typing import Any

import click
from rich.text import Text

from ..client import Client, NotFound, Unavailable
from ..jobs import Job, JobStatus
from .exits import EXIT_FAILURE, EXIT_OK, Failure
from .output import err, out, print_json_line
from .params import DURATION, NAME, job_filter_options, parse_statuses
from .remote import Remote, remote_command
from .render import finished_ok, job_line, progress_text, short, status_text

#: ``jobs watch`` without an id: newest jobs compared per poll, and shown at start.
WATCH_PAGE = 200
WATCH_BACKLOG = 10


@click.command("watch")
@click.argument("job_id", type=NAME, required=False)
@job_filter_options
@click.option(
    "--interval",
    type=DURATION,
    default="1s",
    show_default=True,
    help="Poll period, used only when the node has no event stream.",
)
@click.option("--timeout", type=DURATION, help="Stop after this long (exit 1 if a job is open).")
@remote_command
def watch(
    remote: Remote,
    job_id: str | None,
    status: Sequence[str],
    job_type: str | None,
    created_after: dt.datetime | None,
    created_before: dt.datetime | None,
    interval: float,
    timeout: float | None,
) -> int:
    """Follow a job until it finishes, or with no JOB_ID, follow new jobs and changes.

    Changes arrive live over the node's event stream (/api/v1/events), which
    covers the whole cluster when it shares Redis; against a node without
    one, the command polls every --interval. One line per change (JSON Lines
    with --json). Following one job exits 0 when it completes and 1 when it
    fails or is cancelled; following the list runs until Ctrl-C or --timeout.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with remote.client() as client:
        try:
            if job_id is not None:
                events = _live_events(client, deadline, job_id=job_id.strip().upper())
                if events is None:
                    return _watch_one(remote, client, job_id, interval, deadline)
                return _watch_one_live(remote, client, job_id, events)
            filters = {
                "status": parse_statuses(status),
                "type": job_type,
                "created_after": created_after,
                "created_before": created_before,
            }
            events = _live_events(client, deadline, kind="job", type=job_type)
            if events is None:
                return _watch_list(remote, client, filters, interval, deadline)
            return _watch_list_live(remote, client, filters, events)
        except KeyboardInterrupt:
            return EXIT_OK


def _live_events(
    client: Client, deadline: float | None, **filters: Any
) -> Iterator[dict[str, Any]] | None:
    """The event stream, already subscribed; None if the node has none (then poll)."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    events = client.events(control=True, timeout=timeout, **filters)
    try:
        next(events)  # stream.ready: from here on nothing is missed
    except StopIteration:
        return iter(())
    except (NotFound, Unavailable):
        return None  # an older node, or EVENT_STREAM_MAXLEN=0
    return events


def _watch_one_live(
    remote: Remote, client: Client, job_id: str, events: Iterator[dict[str, Any]]
) -> int:
    """Show the job, then re-read it at each of its events (and after any reconnection)."""
    seen: tuple[JobStatus, int, str] | None = None

    def show() -> Job:
        nonlocal seen
        job = client.get(job_id)
        key = (job.status, len(job.attempts), progress_text(job.progress))
        if key != seen:
            _emit(remote, job, None if seen is None else seen[0])
            seen = key
        return job

    job = show()
    if job.terminal:
        return EXIT_OK if finished_ok(job) else EXIT_FAILURE
    for _event in events:
        job = show()
        if job.terminal:
            return EXIT_OK if finished_ok(job) else EXIT_FAILURE
    raise Failure(f"job {job_id} is still {job.status} after the --timeout")


def _event_job(event: dict[str, Any]) -> dict[str, Any]:
    """A job event as the job fields it carries (what --json prints per change)."""
    return {
        "id": event.get("job_id"),
        "type": event.get("type"),
        "status": event.get("status"),
        "priority": event.get("priority"),
        "retry_count": event.get("retry_count"),
        "attempt": event.get("attempt"),
        "worker_id": event.get("worker_id"),
        "error": event.get("error"),
        "progress": event.get("progress"),
        "node": event.get("node"),
        "event": event.get("kind"),
        "event_id": event.get("id"),
        "at": event.get("at"),
    }


def _watch_list_live(
    remote: Remote,
    client: Client,
    filters: dict[str, Any],
    events: Iterator[dict[str, Any]],
) -> int:
    page = client.list_page(**filters, limit=WATCH_BACKLOG)
    for job in reversed(page.jobs):  # a short look at the present, oldest first
        _emit(remote, job, None)
    statuses = filters["status"]
    previous: dict[str, JobStatus] = {job.id: job.status for job in page.jobs}
    for event in events:
        kind = str(event.get("kind"))
        if kind == "stream.gap":
            err.print(Text(str(event.get("message")), style="yellow"))
            continue
        if not kind.startswith("job.") or not event.get("job_id"):
            continue
        if statuses and event.get("status") not in statuses:
            continue
        if remote.json:
            print_json_line(_event_job(event))
            continue
        try:
            state = JobStatus(str(event.get("status")))
        except ValueError:
            continue
        line = Text(dt.datetime.now().strftime("%H:%M:%S "), style="dim")
        line.append(f"{event['job_id']}  {event.get('type')}  ")
        old = previous.get(event["job_id"])
        if old is not None and old != state:
            line.append_text(status_text(old))
            line.append(" → ")
        line.append_text(status_text(state))
        if state == JobStatus.RUNNING:
            line.append(f"  on {event.get('worker_id') or event.get('node')}")
            if event.get("progress"):
                line.append(f"  {progress_text(event['progress'])}", style="cyan")
        if event.get("error") and state in (JobStatus.FAILED, JobStatus.RETRYING):
            line.append(f"  {short(event.get('error'), 80)}", style="red")
        previous[event["job_id"]] = state
        if len(previous) > 10 * WATCH_PAGE:
            previous.clear()
        out.print(line, soft_wrap=True)
    return EXIT_OK


def _emit(remote: Remote, job: Job, previous: JobStatus | None) -> None:
    if remote.json:
        print_json_line(job.to_dict())
    else:
        out.print(job_line(job, previous), soft_wrap=True)


def _sleep_until_next(interval: float, deadline: float | None) -> bool:
    """Sleep one poll period; False when the deadline has passed."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        interval = min(interval, left)
    time.sleep(interval)
    return True


def _watch_one(
    remote: Remote, client: Client, job_id: str, interval: float, deadline: float | None
) -> int:
    seen: tuple[JobStatus, int, str] | None = None
    while True:
        job = client.get(job_id)
        key = (job.status, len(job.attempts), progress_text(job.progress))
        if key != seen:
            _emit(remote, job, None if seen is None else seen[0])
            seen = key
        if job.terminal:
            return EXIT_OK if finished_ok(job) else EXIT_FAILURE
        if not _sleep_until_next(interval, deadline):
            raise Failure(f"job {job_id} is still {job.status} after the --timeout")


def _watch_list(
    remote: Remote,
    client: Client,
    filters: dict[str, Any],
    interval: float,
    deadline: float | None,
) -> int:
    known: dict[str, JobStatus] = {}
    first = True
    while True:
        page = client.list_page(**filters, limit=WATCH_PAGE)
        for age, job in reversed(list(enumerate(page.jobs))):
            old = known.get(job.id)
            # like `kubectl get -w`: a short look at the present, then only changes
            if (first and age < WATCH_BACKLOG) or (not first and old != job.status):
                _emit(remote, job, old)
            known[job.id] = job.status
        if len(known) > 10 * WATCH_PAGE:
            current = {job.id for job in page.jobs}
            known = {k: v for k, v in known.items() if k in current}
        first = False
        if not _sleep_until_next(interval, deadline):
            return EXIT_OK
