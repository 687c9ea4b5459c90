"""``jobtrio cluster``: the cluster as a node sees it (``status``), and a local one to try.

``status`` asks a node over HTTP; up, down, kill, restart, ps and drill start and
stop processes on this machine (local_cluster.py), added to this group here so
that both stay under the one word ``cluster``.
"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from .exits import EXIT_OK
from .local_cluster import LOCAL_CLUSTER_COMMANDS
from .output import out, print_json
from .remote import Remote, remote_command


@click.group()
def cluster() -> None:
    """The cluster as a node sees it (status), or a local one to try (up, down, kill...)."""


@cluster.command("status")
@remote_command
def cluster_status(remote: Remote) -> int:
    """Leader, election, storage, backends and members."""
    with remote.client() as client:
        view = client.cluster()
        health = client.health()
    if remote.json:
        print_json({**view, "health": health})
        return EXIT_OK
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("node", f"{view['node_id']} (health: {health['status']})")
    leader = view["leader"] or "none yet"
    if view.get("is_leader"):
        leader += " (this node)"
    grid.add_row("leader", leader)
    epoch = "" if view.get("epoch") is None else f", epoch {view['epoch']}"
    grid.add_row("election", f"{view['algorithm']}, term {view['term']}{epoch}")
    grid.add_row("storage", view.get("storage") or "-")
    for backend in health.get("backends", []):
        state = Text("up", style="green") if backend["healthy"] else Text("down", style="bold red")
        if backend.get("error"):
            state.append(f" ({backend['error']})")
        grid.add_row(f"  {backend['kind']}", Text.assemble(f"{backend['name']}: ", state))
    grid.add_row("members", f"{view['alive']} alive of {view['size']}")
    out.print(grid)
    members = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("NODE", "STATE", "ADDRESS", "WORKERS", "LAST CONTACT", "ROLE"):
        members.add_column(name, no_wrap=True)
    for m in view["members"]:
        state = m.get("state", "?")
        style = {"alive": "green", "suspect": "yellow"}.get(state, "red")
        last = m.get("last_contact_seconds_ago")
        members.add_row(
            m["node_id"] + (" *" if m.get("self") else ""),
            Text(state, style=style),
            m.get("address") or "-",
            str(m.get("worker_count") if m.get("worker_count") is not None else "-"),
            "now" if m.get("self") else ("-" if last is None else f"{last:.1f}s ago"),
            "leader" if m.get("is_leader") else "",
        )
    out.print()
    out.print(members)
    return EXIT_OK


for command in LOCAL_CLUSTER_COMMANDS:
    cluster.add_command(command)
