"""How a job looks to a person: status colours, times, the jobs table, a job's sheet, its line.

Shared by ``submit``, ``jobs`` and ``workflows`` so a job reads the same in all of
them; a node's text goes in as rich Text (never markup) through ``printable``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from ..durations import format_duration
from ..jobs import Job, JobStatus
from ..text import printable
from .output import out

STATUS_STYLES = {
    JobStatus.PENDING: "yellow",
    JobStatus.SCHEDULED: "cyan",
    JobStatus.RUNNING: "bold blue",
    JobStatus.RETRYING: "magenta",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "dim",
    JobStatus.WAITING: "dark_goldenrod",
}


def ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = time.time() - ts
    if seconds < 0:
        return "in " + format_duration(round(-seconds))
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def stamp(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: JobStatus) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(status, ""))


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def jobs_table(jobs: Sequence[Job]) -> Table:
    """One row a job. The QUEUE column shows only when a listed job is outside ``default``
    (a node without named queues keeps its 80-column table); an id is never cut."""
    queued = any(job.queue != "default" for job in jobs)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "TYPE", "QUEUE", "STATUS", "PRI", "TRIES", "CREATED", "NODE", "ERROR"):
        if name == "QUEUE" and not queued:
            continue
        table.add_column(
            name,
            no_wrap=name != "ERROR",
            overflow="fold",
            min_width=len(jobs[0].id) if name == "ID" and jobs else None,
        )
    for job in jobs:
        queue = [Text(printable(short(job.queue, 30)))] if queued else []
        table.add_row(
            job.id,
            Text(printable(job.type)),
            *queue,
            status_text(job.status),
            str(job.priority),
            f"{len(job.attempts)}/{job.max_retries + 1}",
            ago(job.created_at),
            Text(printable(job.node_id or "-")),
            Text(printable(short(job.error, 50))),
        )
    return table


def show_job(job: Job) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", job.id)
    table.add_row("type", Text(printable(job.type)))
    table.add_row("status", status_text(job.status))
    table.add_row("priority", str(job.priority))
    table.add_row("queue", Text(printable(job.queue)))
    table.add_row("retries", f"{job.retry_count} of {job.max_retries}")
    table.add_row("created", f"{stamp(job.created_at)} ({ago(job.created_at)})")
    if job.scheduled_at is not None:
        table.add_row("scheduled", f"{stamp(job.scheduled_at)} ({ago(job.scheduled_at)})")
    if job.started_at is not None:
        table.add_row("started", stamp(job.started_at))
    if job.completed_at is not None:
        table.add_row("finished", stamp(job.completed_at))
    if job.timeout is not None:
        table.add_row("timeout", format_duration(job.timeout))
    if job.idempotency_key:
        table.add_row("idempotency key", Text(printable(job.idempotency_key)))
    if job.node_id:
        table.add_row("node", Text(f"{job.node_id} (worker {job.worker_id or '-'})"))
    if job.progress:
        table.add_row("progress", Text(progress_text(job.progress)))
    table.add_row("payload", Text(printable(json.dumps(job.payload, ensure_ascii=False))))
    if job.result is not None:
        table.add_row("result", Text(printable(json.dumps(job.result, ensure_ascii=False))))
    if job.error:
        table.add_row("error", Text(printable(job.error), style="red"))
    out.print(table)
    if job.attempts:
        attempts = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
        for name in ("#", "NODE", "WORKER", "STARTED", "TOOK", "OUTCOME", "ERROR"):
            attempts.add_column(name, no_wrap=name != "ERROR", overflow="fold")
        for a in job.attempts:
            took = "-" if a.ended_at is None else f"{a.ended_at - a.started_at:.3f}s"
            attempts.add_row(
                str(a.number),
                a.node_id,
                a.worker_id or "-",
                stamp(a.started_at),
                took,
                a.outcome or "running",
                short(a.error, 50),
            )
        out.print()
        out.print(attempts)


def finished_ok(job: Job) -> bool:
    return job.status == JobStatus.COMPLETED


def job_line(job: Job, previous: JobStatus | None = None) -> Text:
    line = Text(dt.datetime.now().strftime("%H:%M:%S "), style="dim")
    line.append(f"{job.id}  {job.type}  ")
    if previous is not None and previous != job.status:
        line.append_text(status_text(previous))
        line.append(" → ")
    line.append_text(status_text(job.status))
    if job.status == JobStatus.RUNNING and job.node_id:
        line.append(f"  on {job.worker_id or job.node_id} (attempt {len(job.attempts)})")
        if job.progress:
            line.append(f"  {progress_text(job.progress)}", style="cyan")
    if job.error and job.status in (JobStatus.FAILED, JobStatus.RETRYING):
        line.append(f"  {short(job.error, 80)}", style="red")
    return line


def progress_text(progress: Any) -> str:
    """A progress report as ``40% resized 4/10`` (what ``jobs watch`` and ``show`` print)."""
    if not isinstance(progress, dict) or not isinstance(progress.get("fraction"), int | float):
        return ""
    text = f"{progress['fraction'] * 100:.0f}%"
    message = progress.get("message")
    if not isinstance(message, str) or not message:
        return text
    return f"{text} {short(printable(message, keep_newlines=False), 80)}"
