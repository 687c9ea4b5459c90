"""``jobtrio schedules``: periodic jobs from the command line.

    jobtrio schedules list
    jobtrio schedules add heartbeat --every 30s --type noop
    jobtrio schedules add report --cron "0 6 * * *" --type email --payload @report.json
    jobtrio schedules delete heartbeat

The group stands alone (it imports nothing of the program); ``program.py``
adds it to ``jobtrio``. It follows the same
contract as every other command: ``--url``/``--token``/``--json``, exit 0
on success, 1 on a refusal or an unreachable node, 2 on a usage error.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..durations import format_duration
from ..text import printable
from .exits import EXIT_OK
from .output import out, print_json
from .params import (
    DURATION,
    MAX_RETRIES_OPTION,
    NAME,
    PAYLOAD_OPTION,
    PRIORITY_OPTION,
    TIMEOUT_OPTION,
    load_payload,
)
from .remote import Remote, remote_command
from .render import stamp


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _cadence(schedule: dict[str, Any]) -> str:
    if schedule.get("cron"):
        return f"cron {schedule['cron']}"
    every = schedule.get("every")
    return "-" if every is None else f"every {format_duration(every)}"


def _job(schedule: dict[str, Any]) -> str:
    job = schedule.get("job") or {}
    priority = job.get("priority")
    return str(job.get("type", "?")) + ("" if priority is None else f" (priority {priority})")


def _until(ts: float) -> str:
    seconds = max(0, round(ts - time.time()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds // size}{unit}"
    return f"in {seconds}s"


def _next(schedule: dict[str, Any], relative: bool = True) -> str:
    if not schedule.get("enabled", True):
        return "disabled"
    ts = _timestamp(schedule.get("next_tick"))
    if ts is None:
        return "-"
    return f"{stamp(ts)} ({_until(ts)})" if relative else stamp(ts)


@click.group()
def schedules() -> None:
    """Periodic jobs: list, add (or replace) and delete schedules.

    A schedule submits its job on every tick of a cron expression or a fixed
    interval, once across the cluster. Schedules defined in code are listed
    but cannot be changed here.
    """


@schedules.command("list")
@remote_command
def list_schedules(remote: Remote) -> int:
    """List every schedule with its next tick."""
    with remote.client() as client:
        items = client.schedules()
    if remote.json:
        print_json({"schedules": items, "count": len(items)})
        return EXIT_OK
    if not items:
        out.print("No schedules.")
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False)
    # names wrap rather than truncate: a name cut short cannot be passed to delete
    for name in ("NAME", "WHEN", "JOB"):
        table.add_column(name, overflow="fold")
    for name in ("NEXT TICK", "SOURCE"):
        table.add_column(name, no_wrap=True)
    for s in items:
        table.add_row(
            Text(printable(str(s["name"]))),
            Text(printable(_cadence(s))),
            Text(printable(_job(s))),
            Text(_next(s, relative=False), style="" if s.get("enabled", True) else "dim"),
            s.get("source", "-"),
        )
    out.print(table)
    return EXIT_OK


@schedules.command("add")
@click.argument("name", type=NAME)
@click.option("--cron", metavar="EXPR", help='Cron expression, e.g. "*/5 * * * *" (UTC).')
@click.option("--every", type=DURATION, help="Fixed interval instead of cron (30s, 5m, 1h).")
@click.option("--type", "-t", "job_type", required=True, help="The job type to submit.")
@PAYLOAD_OPTION
@PRIORITY_OPTION
@MAX_RETRIES_OPTION
@TIMEOUT_OPTION
@click.option(
    "--misfire-grace", type=DURATION, help="How late a missed tick may still fire (default 60s)."
)
@click.option("--disabled", is_flag=True, help="Save it without firing it.")
@remote_command
def add_schedule(
    remote: Remote,
    name: str,
    cron: str | None,
    every: float | None,
    job_type: str,
    payload: str | None,
    priority: int | None,
    max_retries: int | None,
    timeout: float | None,
    misfire_grace: float | None,
    disabled: bool,
) -> int:
    """Create schedule NAME, or replace the one with that name."""
    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron or --every")
    data = load_payload(payload)
    with remote.client() as client:
        saved = client.add_schedule(
            name,
            job_type,
            data,
            cron=cron,
            every=every,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            enabled=not disabled,
            misfire_grace=misfire_grace,
        )
    if remote.json:
        print_json(saved)
    else:
        out.print(
            Text.assemble(
                "Saved schedule ",
                (saved["name"], "bold"),
                f" ({_cadence(saved)}, job {_job(saved)}); next tick: {_next(saved)}",
            )
        )
    return EXIT_OK


@schedules.command("delete")
@click.argument("name", type=NAME)
@remote_command
def delete_schedule(remote: Remote, name: str) -> int:
    """Delete schedule NAME (jobs it already submitted are untouched)."""
    with remote.client() as client:
        client.delete_schedule(name)
    if remote.json:
        print_json({"name": name, "deleted": True})
    else:
        out.print(f"Deleted schedule {name}.")
    return EXIT_OK
