"""The parameter types the commands share, so that each reads its flags the same way.

NAME refuses an empty id before it reaches a URL, DURATION takes 500ms/10s/2m/1h,
AT takes ISO 8601 or a local HH:MM, and ``--payload`` is JSON, @file or @- in
every command that takes one. A bad value is a usage error (exit 2) naming the
flag, never the node's 4xx.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..durations import parse_duration
from ..jobs import MAX_PRIORITY, MIN_PRIORITY, JobStatus
from ..jsontext import decode_error_text


class NameType(click.ParamType):
    """An id or a name that goes into a URL path: empty is a usage error (exit 2), not the
    node's 404 or 405 for a route it never meant (``/api/v1/jobs//retry``)."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text.strip():
            self.fail("must not be empty", param, ctx)
        return text


NAME = NameType()


class DurationType(click.ParamType):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 500ms, 10s, 2m or 1h", param, ctx)


class AtType(click.ParamType):
    """A wall-clock time: ISO 8601, or HH:MM[:SS] meaning its next occurrence.

    A time without a zone is the local time of this machine: a person typing
    ``--at 14:30`` means their 14:30 (the API itself takes naive times as UTC).
    """

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        try:
            clock = dt.time.fromisoformat(text)
        except ValueError:
            clock = None
        if clock is not None and clock.tzinfo is None and len(text) <= 8:
            now = dt.datetime.now().astimezone()
            at = now.replace(
                hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0
            )
            return at if at > now else at + dt.timedelta(days=1)
        try:
            at = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            self.fail(
                f"{text!r} is not a time; use ISO 8601 (2024-01-01T12:00:00Z) or HH:MM",
                param,
                ctx,
            )
        return at if at.tzinfo is not None else at.astimezone()


DURATION = DurationType()
AT = AtType()


def load_payload(value: str | None) -> dict[str, Any] | None:
    """``--payload`` as JSON text, ``@file`` or ``@-`` (stdin)."""
    if value is None:
        return None
    source = "--payload"
    text = value
    if value.startswith("@"):
        name = value[1:]
        source = "stdin" if name == "-" else name
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {name}: {exc.strerror}", param_hint="--payload"
            ) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{source} is not JSON: {decode_error_text(exc)}",
            param_hint="--payload",
        ) from None
    if not isinstance(payload, dict):
        raise click.BadParameter("the payload must be a JSON object", param_hint="--payload")
    return payload


F = TypeVar("F", bound=Callable[..., Any])


def parse_statuses(values: Sequence[str]) -> list[str] | None:
    """``--status`` values (repeated, or comma-separated) as the API's status names."""
    names = [p.strip().lower() for v in values for p in v.split(",") if p.strip()]
    allowed = [s.value for s in JobStatus]
    for name in names:
        if name not in allowed:
            raise click.BadParameter(
                f"{name!r} is not a status; use {', '.join(allowed)}", param_hint="--status"
            )
    return names or None


def job_filter_options(fn: F) -> F:
    """--status, --type, --created-after and --created-before: ``jobs list`` and ``watch``."""
    fn = click.option("--created-before", type=AT, help="Only jobs created before this time.")(fn)
    fn = click.option("--created-after", type=AT, help="Only jobs created at or after this time.")(
        fn
    )
    fn = click.option("--type", "-t", "job_type", help="Only jobs of this type.")(fn)
    fn = click.option(
        "--status",
        "-s",
        multiple=True,
        metavar="STATUS[,STATUS]",
        help="Only jobs in these states (repeat, or separate with commas).",
    )(fn)
    return fn


# A job's own settings, as ``submit`` and ``schedules add`` both take them (one spelling,
# one range, one help line; each use makes a new click Option).
PAYLOAD_OPTION = click.option(
    "--payload", "-p", metavar="JSON|@FILE", help="The job's payload: JSON, @file, or @- for stdin."
)
PRIORITY_OPTION = click.option(
    "--priority",
    "-P",
    type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY),
    help="1 (low) to 10 (high); 5 when omitted.",
)
MAX_RETRIES_OPTION = click.option(
    "--max-retries", type=click.IntRange(0, 1000), help="Retries after the first try."
)
TIMEOUT_OPTION = click.option(
    "--timeout", type=DURATION, help="How long one attempt may run (30s, 5m)."
)
