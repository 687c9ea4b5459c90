"""``jobtrio queues``: named queues from the command line.

    jobtrio queues list
    jobtrio queues pause render
    jobtrio queues resume render
    jobtrio queues limit render 10 --per 1s
    jobtrio queues limit render --clear

The group stands alone (it imports nothing of the program); ``program.py`` adds
it to ``jobtrio``. Same contract as every command:
``--url``/``--token``/``--json``, exit 0 on success, 1 on a refusal or an
unreachable node, 2 on a usage error.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..durations import format_duration
from ..text import printable
from .exits import EXIT_OK
from .output import out, print_json
from .params import DURATION, NAME
from .remote import Remote, remote_command


def _limit(queue: dict[str, Any]) -> str:
    limit = queue.get("rate_limit")
    if not limit:
        return "-"
    return f"{limit['jobs']} per {format_duration(limit['per_seconds'])}"


def _said(queue: dict[str, Any]) -> Text:
    state = "paused" if queue["paused"] else "running"
    return Text.assemble(
        "Queue ",
        (printable(queue["name"]), "bold"),
        f": {state}, rate limit {_limit(queue)}, {queue['pending']} pending",
    )


@click.group()
def queues() -> None:
    """Named queues: list them, pause and resume one, set its rate limit.

    Pause and limits are kept in the Broker: they hold for every node and
    survive any node's failover.
    """


@queues.command("list")
@remote_command
def list_queues(remote: Remote) -> int:
    """List every queue: pending jobs by type, paused, rate limit, nodes serving it."""
    with remote.client() as client:
        data = client.queues()
    if remote.json:
        print_json(data)
        return EXIT_OK
    if not data["queues"]:
        out.print("No queues hold pending jobs or settings.")
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("QUEUE", overflow="fold")
    for name in ("PENDING", "STATE", "RATE LIMIT"):
        table.add_column(name, no_wrap=True)
    table.add_column("NODES", overflow="fold")
    for q in data["queues"]:
        table.add_row(
            Text(printable(q["name"])),
            str(q["pending"]),
            Text("paused", style="yellow") if q["paused"] else Text("running"),
            _limit(q),
            Text(printable(", ".join(q["nodes"]) or "none")),
        )
    out.print(table)
    for u in data["unserved"]:
        out.print(
            Text(
                printable(f"{u['pending']} pending in {u['queue']}: {u['reason']}"),
                style="red",
            )
        )
    return EXIT_OK


@queues.command("pause")
@click.argument("name", type=NAME)
@remote_command
def pause_queue(remote: Remote, name: str) -> int:
    """Pause queue NAME: no node claims from it (running jobs finish)."""
    with remote.client() as client:
        queue = client.pause_queue(name)
    print_json(queue) if remote.json else out.print(_said(queue))
    return EXIT_OK


@queues.command("resume")
@click.argument("name", type=NAME)
@remote_command
def resume_queue(remote: Remote, name: str) -> int:
    """Resume queue NAME."""
    with remote.client() as client:
        queue = client.resume_queue(name)
    print_json(queue) if remote.json else out.print(_said(queue))
    return EXIT_OK


@queues.command("limit")
@click.argument("name", type=NAME)
@click.argument("jobs", type=click.IntRange(1, 1_000_000), required=False)
@click.option("--per", type=DURATION, help="The interval JOBS are allowed in (500ms, 1s, 1m).")
@click.option("--clear", is_flag=True, help="Lift the queue's rate limit.")
@remote_command
def limit_queue(remote: Remote, name: str, jobs: int | None, per: float | None, clear: bool) -> int:
    """Allow at most JOBS claims from queue NAME per --per, cluster-wide (or --clear)."""
    if clear:
        if jobs is not None or per is not None:
            raise click.UsageError("--clear takes no JOBS or --per")
    elif jobs is None and per is None:
        raise click.UsageError("give JOBS and --per (e.g. limit render 10 --per 1s), or --clear")
    elif per is None:
        raise click.UsageError(
            f"--per is missing: the interval the {jobs} jobs are allowed in "
            "(e.g. limit render 10 --per 1s)"
        )
    elif jobs is None:
        raise click.UsageError(
            "JOBS is missing: how many jobs --per allows (e.g. limit render 10 --per 1s)"
        )
    with remote.client() as client:
        if clear:
            queue = client.clear_rate_limit(name)
        else:
            assert jobs is not None and per is not None
            queue = client.set_rate_limit(name, jobs, per)
    print_json(queue) if remote.json else out.print(_said(queue))
    return EXIT_OK
