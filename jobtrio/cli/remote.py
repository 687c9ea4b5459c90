"""Talking to a node: the --url/--token/--json/--http-timeout/--ca-file flags as one ``Remote``.

Every command that drives a node over HTTP takes the same five flags (and their
JOBTRIO_* variables); ``remote_command`` adds them once and hands the command a
``Remote`` that opens the Client, so no command repeats them or their checks.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..client import DEFAULT_URL, Client, ca_file_context, node_url
from .params import DURATION

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Remote:
    url: str
    token: str | None
    json: bool
    timeout: float
    #: What HTTPS answers are checked against: ``--ca-file``'s CAs, else the system's.
    verify: bool | ssl.SSLContext = True

    def client(self) -> Client:
        return Client(self.url, token=self.token or None, timeout=self.timeout, verify=self.verify)


def ca_file_option(fn: F) -> F:
    """``--ca-file`` (env JOBTRIO_CA_FILE): trust this PEM file's CAs for HTTPS, given to
    the command as ``verify`` (an SSL context, or True for the system's CAs)."""

    def to_context(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if not value:
            return True
        try:
            return ca_file_context(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(  # type: ignore[no-any-return]
        "--ca-file",
        "verify",
        envvar="JOBTRIO_CA_FILE",
        metavar="PEM",
        callback=to_context,
        help="Trust the CAs in this PEM file for https:// URLs (a private CA) "
        "[env: JOBTRIO_CA_FILE].",
    )(fn)


def _checked_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return node_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def remote_command(fn: F) -> F:
    """Give a command --url/--token/--json/--http-timeout/--ca-file, gathered into one
    ``remote``."""

    @click.option(
        "--url",
        envvar="JOBTRIO_URL",
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        callback=_checked_url,
        help="The node to talk to [env: JOBTRIO_URL].",
    )
    @click.option(
        "--token",
        envvar="JOBTRIO_TOKEN",
        metavar="TOKEN",
        help="Bearer token [env: JOBTRIO_TOKEN].",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's shapes).")
    @click.option(
        "--http-timeout",
        type=DURATION,
        default="10s",
        show_default=True,
        help="How long to wait for each HTTP answer.",
    )
    @ca_file_option
    @functools.wraps(fn)
    def wrapper(
        url: str,
        token: str | None,
        as_json: bool,
        http_timeout: float,
        verify: bool | ssl.SSLContext,
        **kwargs: Any,
    ) -> Any:
        return fn(Remote(url, token, as_json, http_timeout, verify), **kwargs)

    return wrapper  # type: ignore[return-value]
