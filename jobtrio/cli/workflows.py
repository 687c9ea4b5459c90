"""``jobtrio workflows``: chains, groups and chords from the command line.

    jobtrio workflows submit flow.json          # or - for stdin, or the JSON itself
    jobtrio workflows show 01J9Z6N5G4X8W3QH2K7R1M0P9T
    jobtrio workflows cancel 01J9Z6N5G4X8W3QH2K7R1M0P9T

The group stands alone (it imports nothing of the program); ``program.py``
adds it to ``jobtrio``. Same contract as every
command: ``--url``/``--token``/``--json``; exit 0 on success, 1 on a refusal,
an unreachable node, or (``show --wait``) a workflow that did not complete,
2 on a usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from ..client import Workflow
from ..jobs import JobStatus
from ..jsontext import decode_error_text
from ..text import printable
from .exits import EXIT_FAILURE, EXIT_OK
from .output import out, print_json
from .params import DURATION, NAME
from .remote import Remote, remote_command
from .render import progress_text, short, status_text


def _load_spec(value: str) -> dict[str, Any]:
    """The workflow as JSON text, a file name, or ``-`` for stdin."""
    source = "the workflow"
    text = value
    if not value.lstrip().startswith(("{", "[")):
        name = printable(value if len(value) <= 200 else value[:199] + "…")
        source = "stdin" if value == "-" else name
        try:
            text = sys.stdin.read() if value == "-" else Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:  # a binary file: the reason, not a traceback
            raise click.BadParameter(
                f"{source} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
            ) from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{source} is not JSON: {decode_error_text(exc)}") from None
    except RecursionError:  # the node refuses far less anyway (64 levels)
        raise click.BadParameter(f"{source} is nested too deeply to be a workflow") from None
    if not isinstance(spec, dict):
        raise click.BadParameter(f"{source} must be a JSON object (chain, group or chord)")
    return spec


def _show(remote: Remote, flow: Workflow) -> None:
    if remote.json:
        print_json(
            {
                "id": flow.id,
                "kind": flow.kind,
                "status": flow.status,
                "counts": flow.counts,
                "members": flow.members,
                "jobs": [j.to_dict() for j in flow.jobs],
            }
        )
        return
    counts = ", ".join(f"{n} {s}" for s, n in flow.counts.items())
    out.print(Text(f"workflow {flow.id}  {flow.kind}  {flow.status}  ({counts})"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("#", "ID", "TYPE", "STATUS", "AFTER", "NOTE"):
        table.add_column(name, overflow="fold")
    position = {job_id: i for i, job_id in enumerate(flow.members)}
    for i, job in enumerate(flow.jobs):
        after = ",".join(str(position.get(p, "?")) for p in job.depends_on) or "-"
        note = job.error or ""
        if job.status == JobStatus.RUNNING and job.progress:
            note = progress_text(job.progress)
        elif job.status == JobStatus.WAITING:
            note = f"waits for {len(job.waiting_for)}"
        table.add_row(
            str(i),
            job.id,
            Text(printable(job.type)),
            status_text(job.status),
            after,
            Text(short(printable(note), 60)),
        )
    out.print(table)


@click.group()
def workflows() -> None:
    """Chains, groups and chords of jobs: submit one, show it, cancel it.

    A workflow is one JSON object, exactly one of {"chain": [...]}, {"group":
    [...]} or {"chord": {"group": [...], "callback": job}}, whose members are
    jobs (as `jobs submit` sends them) or nested workflows. Its id is its
    first job's id.
    """


@workflows.command("submit")
@click.argument("spec", metavar="FILE|-|JSON")
@click.option(
    "--wait", is_flag=True, help="Wait until every member ended; exit 1 unless completed."
)
@click.option("--timeout", type=DURATION, help="With --wait: give up after this long (30s, 5m).")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Submitting the same key again returns the same workflow, filing nothing new.",
)
@remote_command
def submit_workflow(
    remote: Remote, spec: str, wait: bool, timeout: float | None, idempotency_key: str | None
) -> int:
    """Submit a workflow (a file, - for stdin, or the JSON itself)."""
    body = _load_spec(spec)
    if idempotency_key is not None and "idempotency_key" in body:
        raise click.UsageError(
            "give the idempotency key in the spec or --idempotency-key, not both"
        )
    with remote.client() as client:
        flow = client.submit_workflow(body, idempotency_key=idempotency_key)
        if wait:
            flow = client.wait_workflow(flow.id, timeout)
    _show(remote, flow)
    return EXIT_FAILURE if wait and flow.status != "completed" else EXIT_OK


@workflows.command("show")
@click.argument("workflow_id", type=NAME)
@click.option(
    "--wait", is_flag=True, help="Wait until every member ended; exit 1 unless completed."
)
@click.option("--timeout", type=DURATION, help="With --wait: give up after this long (30s, 5m).")
@remote_command
def show_workflow(remote: Remote, workflow_id: str, wait: bool, timeout: float | None) -> int:
    """Show a workflow's state and every member."""
    with remote.client() as client:
        flow = (
            client.wait_workflow(workflow_id, timeout) if wait else client.get_workflow(workflow_id)
        )
    _show(remote, flow)
    return EXIT_FAILURE if wait and flow.status != "completed" else EXIT_OK


@workflows.command("cancel")
@click.argument("workflow_id", type=NAME)
@remote_command
def cancel_workflow(remote: Remote, workflow_id: str) -> int:
    """Cancel every member of a workflow that has not ended."""
    with remote.client() as client:
        flow = client.cancel_workflow(workflow_id)
    _show(remote, flow)
    return EXIT_OK
