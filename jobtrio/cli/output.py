"""Where a command's words go: the two consoles, JSON on stdout, the progress bar.

Humans get tables and bars on a terminal; scripts get JSON (the API's own shapes)
on stdout. Everything a node said is escaped on the way out (SafeConsole,
safe_json), so no command prints a node's control characters to the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..terminal import SafeConsole, safe_json

# What the CLI prints often comes from a node: the consoles escape any control character
# in it (SafeConsole), and a node's text goes in as Text, never read as rich markup.
out = SafeConsole(highlight=False, soft_wrap=False)
err = SafeConsole(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    click.echo(safe_json(data, indent=2))


def print_json_line(data: Any) -> None:
    click.echo(safe_json(data, separators=(",", ":")))
    sys.stdout.flush()


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar on stderr (only on a terminal); yields ``update(completed)``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda completed: bar.update(task, completed=completed)
