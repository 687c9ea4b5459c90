"""The composition root: backends, node, HTTP API and metrics in one nursery.

``serve`` is what ``jobtrio serve`` runs. SIGTERM or SIGINT starts the
node's graceful stop (running jobs get SHUTDOWN_GRACE to finish, the rest
return to the queue); the HTTP server keeps answering until the node is
down, then closes.
"""

from __future__ import annotations

import errno
import functools
import gc
import logging
import signal
import socket
import time
from collections.abc import Sequence

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .actors.cluster import ClusterActor, ClusterConfig
from .actors.node import Node
from .api.app import build_auth, create_app
from .api.metrics_app import create_metrics_app
from .backends import open_backends
from .cluster.raft_state import FileRaftState
from .cluster.transport import WebsocketTransport
from .config import ConfigError, Settings
from .processors import Registry
from .queueplan import advertised_types
from .testfaults import partition_switch, wall_clock
from .tls import peer_client_context, peer_server_context

log = logging.getLogger("jobtrio.server")

#: Largest websocket message a client may send the API (the event stream reads none).
WEBSOCKET_MAX_MESSAGE_BYTES = 64 * 1024


def hypercorn_config(settings: Settings, host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5.0
    # clients send the event stream nothing but its close: a big frame is an attack
    config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE_BYTES
    if settings.tls_enabled:
        config.certfile = settings.tls_cert_file
        config.keyfile = settings.tls_key_file
    return config


def check_port_free(variable: str, host: str, port: int) -> None:
    """Stop start-up with one line naming the variable if ``host:port`` cannot be bound.

    Binding as hypercorn will (SO_REUSEADDR, so a port in TIME_WAIT is fine)
    and letting go at once: a port taken by another process would otherwise
    surface as a long traceback from deep inside the server. (Another process
    may still take the port in between; that rare race keeps the traceback.)
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(
            f"{variable}={port} is not usable: cannot resolve {host!r}: {exc}"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            reason = (
                "is already in use"
                if exc.errno == errno.EADDRINUSE
                else f"cannot be bound ({exc.strerror})"
            )
            raise ConfigError(f"{variable}={port} is not usable: {host}:{port} {reason}") from None


def check_ports(settings: Settings) -> None:
    """Every port this node will listen on, before anything is opened."""
    check_port_free("SERVER_PORT", settings.server_host, settings.server_port)
    if settings.metrics_enabled and settings.metrics_port:
        check_port_free("METRICS_PORT", settings.server_host, settings.metrics_port)
    if settings.clustered:
        check_port_free("CLUSTER_PORT", settings.cluster_host, settings.cluster_port)


def build_cluster(
    settings: Settings, types: Sequence[str] = ()
) -> tuple[ClusterActor, WebsocketTransport] | None:
    if not settings.clustered:
        return None
    if not settings.cluster_secret:
        log.warning("CLUSTER_SECRET is empty: any process that reaches CLUSTER_PORT can join")
    transport = WebsocketTransport(
        settings.node_id,
        settings.advertise,
        settings.cluster_secret,
        host=settings.cluster_host,
        port=settings.cluster_port,
        # TLS_ENABLED: the peers talk wss://, checked against TLS_CA_FILE (tls.py)
        server_ssl=peer_server_context(settings) if settings.tls_enabled else None,
        client_ssl=peer_client_context(settings) if settings.tls_enabled else None,
        cut_off=partition_switch(),
    )
    config = ClusterConfig(
        node_id=settings.node_id,
        advertise=settings.advertise,
        seeds=tuple(p for p in settings.cluster_peers if p != settings.advertise),
        algorithm=settings.election_algorithm,
        election_timeout=settings.election_timeout,
        election_interval=settings.election_interval,
        api_url=settings.api_url,
        worker_count=settings.worker_count,
        types=advertised_types(types),
        queues=settings.queue_plan.text,
    )
    state = None
    if settings.election_algorithm == "raft":
        state = FileRaftState(settings.raft_state_path, settings.node_id)
    return ClusterActor(config, transport, raft_state=state), transport


def freeze_startup_heap() -> None:
    """Leave the objects made at start-up out of the garbage collector's full collections.

    Why: a node's start-up heap (the modules of trio, Quart, hypercorn, redis,
    prometheus and the app) is a few hundred thousand objects that live as long as the
    process, and every full collection walked them all. A batch of 1,000 jobs makes some
    12,000 containers, so full collections came every few batches: with the heap
    frozen the served node spent 11% less CPU per job on ``POST /api/v1/jobs/batch``
    (docs/benchmarks.md). Garbage is collected first, so no cycle is kept for good;
    what start-up made and later drops is still freed by its reference count.
    For the process that serves (``jobtrio serve``), not a library's caller.
    """
    gc.collect()
    gc.freeze()


async def serve(
    settings: Settings,
    registry: Registry | None = None,
    *,
    handle_signals: bool = True,
    freeze_heap: bool = False,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node until it is stopped; ``ConfigError`` (one line) for a port in use.

    ``freeze_heap``: once the node serves, ``freeze_startup_heap`` (``jobtrio serve``
    does; a test or an embedding program keeps its own collector as it was)."""
    # the users file is read before anything opens: a bad one is one line and exit 2
    auth = build_auth(settings, time.time) if settings.auth_enabled else None
    if settings.tls_enabled:
        peer_server_context(settings)  # the certificate and key load: else one line, exit 2
    check_ports(settings)
    clock = wall_clock()  # the real one unless a chaos test set an offset
    registry = registry or Registry()
    cluster = build_cluster(settings, registry.types())
    broker, store = await open_backends(settings)
    node = Node(
        settings,
        broker,
        store,
        registry,
        clock=clock,
        cluster=cluster[0] if cluster else None,
    )
    if auth is not None:
        tokens = auth[0].tokens
        # the hook Node leaves for this: its calls to peers' APIs carry a node token
        node.peer_headers = lambda: {  # type: ignore[method-assign]
            "Authorization": f"Bearer {tokens.issue_peer(node.node_id, time.time())}"
        }
    app = create_app(
        node,
        authorizer=auth[0] if auth else None,
        login_service=auth[1] if auth else None,
    )
    http_done = trio.Event()
    http_closed = trio.Event()

    async def serve_http(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await hypercorn_serve(
                app,
                hypercorn_config(settings, settings.server_host, settings.server_port),
                shutdown_trigger=http_done.wait,
                task_status=task_status,
            )
        finally:
            http_closed.set()

    try:
        async with trio.open_nursery() as nursery:
            if cluster is not None:
                await nursery.start(cluster[1].run)
            await nursery.start(node.run)
            binds = await nursery.start(serve_http)
            log.info(
                "node %s serving %s (storage: %s)",
                node.node_id,
                ", ".join(binds),
                settings.storage,
            )
            if settings.metrics_enabled and settings.metrics_port:
                # the same TLS as the API (Prometheus scrapes https:// with the CA)
                metrics_config = hypercorn_config(
                    settings, settings.server_host, settings.metrics_port
                )
                metrics_config.graceful_timeout = 0.5
                await nursery.start(
                    functools.partial(
                        hypercorn_serve,
                        create_metrics_app(node),
                        metrics_config,
                        shutdown_trigger=http_done.wait,
                    )
                )
            if handle_signals:
                nursery.start_soon(_stop_on_signal, node)
            if freeze_heap:
                freeze_startup_heap()
            task_status.started(node)
            await node.stopped.wait()
            http_done.set()  # open requests get a few seconds to finish
            with trio.move_on_after(6.0):
                await http_closed.wait()
            nursery.cancel_scope.cancel()
    finally:
        await node.broker.close()
        await node.store.close()


async def _stop_on_signal(node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping gracefully", signal.Signals(signum).name)
            node.request_stop()
            return
