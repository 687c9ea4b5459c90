"""The app on ``METRICS_PORT``: ``GET /metrics`` in Prometheus' text format.

It runs under hypercorn in the node's nursery, like the API, so a scrape can
first ask the Broker for the current queue depths (``queue_depth_gauge`` is
then as fresh as the scrape; a Broker that does not answer within
``DEPTH_TIMEOUT`` leaves the last values and ``backend_up`` says why).
"""

from __future__ import annotations

import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response
from quart_trio import QuartTrio

from ..actors.node import Node
from ..backends.base import BackendUnavailable

DEPTH_TIMEOUT = 2.0


async def refresh(node: Node) -> None:
    """Set the gauges that are read from a backend rather than counted as things happen."""
    with trio.move_on_after(DEPTH_TIMEOUT):
        try:
            depths = await node.broker.depths()
        except BackendUnavailable:
            return
        for state, n in depths.items():
            node.metrics.queue_depth.labels(state).set(n)


def create_metrics_app(node: Node) -> QuartTrio:
    app = QuartTrio("jobtrio-metrics", static_folder=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        await refresh(node)
        return Response(node.metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def root() -> Response:
        return Response("jobtrio metrics: see /metrics\n", content_type="text/plain")

    return app
