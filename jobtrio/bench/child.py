"""The served processes' own code: ``python -m jobtrio.bench.child node|ceiling``.

Kept out of the package's imports (``served`` holds the parent's side), so
``python -m`` runs it fresh. See ``jobtrio.bench.served`` for what each serves.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import trio


async def _serve_node(args: argparse.Namespace) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    from ..actors.node import Node
    from ..api.app import create_app
    from ..config import Settings
    from ..server import freeze_startup_heap, hypercorn_config
    from .inprocess import START_TYPE, close_bench_backends, open_bench_backends, started_now

    broker, store = await open_bench_backends(
        args.backend, args.directory, args.redis_url, args.prefix
    )
    settings = Settings(worker_count=args.workers, node_id="bench")
    node = Node(settings, broker, store)
    node.registry.register(START_TYPE, started_now)
    done = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await nursery.start(
                lambda task_status: hypercorn_serve(
                    create_app(node),
                    hypercorn_config(settings, "127.0.0.1", args.port),
                    shutdown_trigger=done.wait,
                    task_status=task_status,
                )
            )
            freeze_startup_heap()  # as jobtrio serve does
            print("ready", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            node.request_stop()
            await node.stopped.wait()
            done.set()
            nursery.cancel_scope.cancel()
    finally:
        await close_bench_backends(broker, store)


def ceiling_app() -> Any:
    """The trivial route: read a JSON job, answer 201 with a small JSON object."""
    from quart import jsonify, request
    from quart_trio import QuartTrio

    app = QuartTrio("ceiling")

    @app.post("/api/v1/jobs")
    async def post() -> Any:
        data = await request.get_json()
        return jsonify({"id": "0", "type": data.get("type"), "status": "pending"}), 201

    return app


async def _serve_ceiling(args: argparse.Namespace) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    from ..config import Settings
    from ..server import hypercorn_config

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: hypercorn_serve(
                ceiling_app(),
                hypercorn_config(Settings(), "127.0.0.1", args.port),
                shutdown_trigger=done.wait,
                task_status=task_status,
            )
        )
        print("ready", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        done.set()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobtrio.bench.child")
    parser.add_argument("mode", choices=["node", "ceiling"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", choices=["memory", "sqlite", "redis"], default="sqlite")
    parser.add_argument("--directory", default=".")
    parser.add_argument("--redis-url")
    parser.add_argument("--prefix")
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args(argv)
    trio.run(_serve_node if args.mode == "node" else _serve_ceiling, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
