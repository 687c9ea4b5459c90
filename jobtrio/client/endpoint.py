"""Where a client finds its node and how it speaks to it: the URL (checked at once),
the token, the headers, TLS verification.

These are settled once, when a client is made, and read alike by ``Client``,
``AsyncClient`` and the CLI (which checks ``--url`` and ``--ca-file`` with
``node_url`` and ``ca_file_context``), so a bad URL or CA file is named
before anything is sent.
"""

from __future__ import annotations

import importlib.metadata
import os
import ssl
from collections.abc import Mapping

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 10.0

try:
    USER_AGENT = f"jobtrio-python/{importlib.metadata.version('jobtrio')}"
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    USER_AGENT = "jobtrio-python"


def ca_file_context(path: str) -> ssl.SSLContext:
    """A client TLS context trusting the CAs of the PEM file ``path`` (``verify="ca.pem"``,
    the CLI's ``--ca-file``); ``ValueError`` naming the file if it is not one."""
    try:
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ValueError(f"CA file {path}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"CA file {path} is not a PEM file of CA certificates: {exc}") from None


def tls_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx's ``verify``: a CA file's path becomes a context (httpx deprecates paths)."""
    return ca_file_context(verify) if isinstance(verify, str) else verify


def node_url(url: str) -> str:
    """A node's base URL as the client uses it (``host:port`` alone means http://), or
    ``ValueError`` naming what is wrong: said at once, not as a failed connection later."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parsed = httpx.URL(text)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: a node speaks http:// or https://, not {parsed.scheme}://")
    if not parsed.host:
        raise ValueError(f"{url!r} names no host (e.g. http://127.0.0.1:8080)")
    if "%" in parsed.host:  # httpx escapes what a host name cannot hold (a space...)
        raise ValueError(f"{url!r}: {parsed.host!r} is not a host name")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{url!r}: the port must be from 1 to 65535")
    return text.rstrip("/")


def url_and_token(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The node and token a client talks to: what it was given, else ``JOBTRIO_URL`` and
    ``JOBTRIO_TOKEN``, as for the CLI, so a script follows whatever the shell points at."""
    url = node_url(url or os.environ.get("JOBTRIO_URL") or DEFAULT_URL)
    return url, token if token is not None else os.environ.get("JOBTRIO_TOKEN")


def request_headers(token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of every request of a client; the caller's own come last, so they win."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return headers
