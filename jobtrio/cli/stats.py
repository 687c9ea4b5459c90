"""``jobtrio stats``: one node's queue depths, job records, workers and counters."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from ..durations import format_duration
from ..jobs import JobStatus
from ..text import printable
from .exits import EXIT_OK
from .output import out, print_json
from .remote import Remote, remote_command
from .render import status_text


@click.command()
@remote_command
def stats(remote: Remote) -> int:
    """Queue depths, job records, workers and counters of a node."""
    with remote.client() as client:
        data = client.stats()
    if remote.json:
        print_json(data)
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("STATUS")
    table.add_column("QUEUED", justify="right")
    table.add_column("RECORDS", justify="right")
    records = data.get("records") or {}
    for status in JobStatus:
        table.add_row(
            status_text(status),
            str(data["queue"].get(status.value, 0)),
            str(records.get(status.value, "-")) if data.get("records") is not None else "?",
        )
    out.print(table)
    workers = data["workers"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("node", f"{data['node_id']} (leader: {data.get('leader') or 'none'})")
    grid.add_row("workers", f"{workers['busy']} busy, {workers['idle']} idle of {workers['total']}")
    grid.add_row("finished here", str(data.get("finished", "-")))
    uptime = data.get("uptime_seconds")
    if uptime is not None:
        grid.add_row("uptime", format_duration(round(uptime)))
    grid.add_row("strategy", str(data.get("strategy", "-")))
    grid.add_row("processors", ", ".join(data.get("processors", [])))
    out.print()
    out.print(grid)
    for u in data.get("unserved") or []:
        line = f"{u['pending']} pending in {u['queue']}: {u['reason']}"
        out.print(Text(printable(line), style="red"))
    return EXIT_OK
