"""The composition root: backends, node, HTTP API and metrics in one nursery.

``serve`` is what ``jobtrio serve`` runs. SIGTERM or SIGINT starts the
node's graceful stop (running jobs get SHUTDOWN_GRACE to finish, the rest
return to the queue); the HTTP server keeps answering until the node is
down, then closes.
"""

from __future__ import annotations

import logging
import signal

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .actors.node import Node
from .api.app import create_app
from .backends import open_backends
from .config import Settings
from .processors import Registry

log = logging.getLogger("jobtrio.server")


def hypercorn_config(settings: Settings, host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5.0
    if settings.tls_enabled:
        config.certfile = settings.tls_cert_file
        config.keyfile = settings.tls_key_file
    return config


async def build_node(settings: Settings, registry: Registry | None = None) -> Node:
    broker, store = await open_backends(settings)
    return Node(settings, broker, store, registry)


async def serve(
    settings: Settings,
    registry: Registry | None = None,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    node = await build_node(settings, registry)
    app = create_app(node)
    http_done = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            binds = await nursery.start(
                lambda task_status: hypercorn_serve(
                    app,
                    hypercorn_config(settings, settings.server_host, settings.server_port),
                    shutdown_trigger=http_done.wait,
                    task_status=task_status,
                )
            )
            log.info(
                "node %s serving %s (storage: %s)",
                node.node_id,
                ", ".join(binds),
                settings.storage,
            )
            if settings.metrics_enabled and settings.metrics_port:
                from prometheus_client import start_http_server

                server, _thread = start_http_server(
                    settings.metrics_port,
                    addr=settings.server_host,
                    registry=node.metrics.registry,
                )
                nursery.start_soon(_close_on_cancel, server)
            if handle_signals:
                nursery.start_soon(_stop_on_signal, node)
            task_status.started(node)
            await node.stopped.wait()
            http_done.set()
            nursery.cancel_scope.deadline = trio.current_time() + 6.0
    finally:
        await node.broker.close()
        await node.store.close()


async def _close_on_cancel(server: object) -> None:
    try:
        await trio.sleep_forever()
    finally:
        server.shutdown()  # type: ignore[attr-defined]


async def _stop_on_signal(node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping gracefully", signal.Signals(signum).name)
            node.request_stop()
            return
