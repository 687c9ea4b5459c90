"""TLS contexts for the peer transport, from the TLS_* settings.

The HTTP API, the event stream and ``/metrics`` are served by hypercorn,
which builds its own context from ``TLS_CERT_FILE``/``TLS_KEY_FILE``
(``server.hypercorn_config``). The peer transport (``CLUSTER_PORT``, a
websocket between nodes) uses the two contexts made here:

- the listener presents the node's certificate and, with
  ``TLS_PEER_CLIENT_AUTH=true``, requires the dialling peer to present one
  signed by ``TLS_CA_FILE`` (mutual TLS);
- the dialler checks the listener's certificate against ``TLS_CA_FILE`` (the
  system's CAs when it is empty), host name included: a peer's certificate
  must name the host its ``CLUSTER_ADVERTISE`` address uses. It presents the
  node's own certificate, which a listener asking for one checks.

A node's own HTTPS calls to its peers' APIs (the cluster-wide
``/api/v1/workers`` view) use the dialler's context too (``peer_http_verify``):
the peers' certificates are checked against ``TLS_CA_FILE``, not the
process's ``SSL_CERT_FILE`` or system CAs alone, and the node presents its
certificate.

TLS 1.2 is the oldest version offered. A file that cannot be read or a key
that does not match its certificate stops start-up with one line naming the
variable (``ConfigError``).
"""

from __future__ import annotations

import os
import ssl

from .config import ConfigError, Settings


def _load_chain(context: ssl.SSLContext, settings: Settings) -> None:
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except FileNotFoundError:
        # ssl names no file here (exc.filename is None): say which of the two is missing
        missing = [
            f"{name}={path}"
            for name, path in (
                ("TLS_CERT_FILE", settings.tls_cert_file),
                ("TLS_KEY_FILE", settings.tls_key_file),
            )
            if not os.path.isfile(path)
        ]
        raise ConfigError(
            f"{' and '.join(missing) or 'TLS_CERT_FILE/TLS_KEY_FILE'} is not usable: no such file"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"TLS_CERT_FILE={settings.tls_cert_file} with TLS_KEY_FILE={settings.tls_key_file} "
            f"is not usable: {exc}"
        ) from None


def _load_ca(context: ssl.SSLContext, settings: Settings) -> None:
    if not settings.tls_ca_file:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    try:
        context.load_verify_locations(cafile=settings.tls_ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS_CA_FILE={settings.tls_ca_file} is not usable: {exc}") from None


def peer_server_context(settings: Settings) -> ssl.SSLContext:
    """What the cluster listener presents (and checks, with mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, settings)
    if settings.tls_peer_client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_ca(context, settings)
    return context


def peer_http_verify(settings: Settings) -> ssl.SSLContext | bool:
    """What a node's HTTPS calls to peers' APIs verify against (httpx's ``verify``): the
    peer transport's client context under TLS_ENABLED, else httpx's default."""
    return peer_client_context(settings) if settings.tls_enabled else True


def peer_client_context(settings: Settings) -> ssl.SSLContext:
    """What a node dialling a peer checks the peer against (and presents)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, settings)
    _load_chain(context, settings)
    return context
