"""The app on ``METRICS_PORT``: ``GET /metrics`` in Prometheus' text format.

It runs under hypercorn in the node's nursery, like the API, so a scrape can
first ask the Broker for the current queue depths (``queue_depth_gauge`` is
then as fresh as the scrape; a Broker that does not answer within
``DEPTH_TIMEOUT`` leaves the last values and ``backend_up`` says why).

With ``METRICS_BEARER_TOKEN`` or ``METRICS_BASIC_AUTH`` set, a scrape
without those credentials gets 401 (compared in constant time); Prometheus
sends either (``authorization`` or ``basic_auth`` in its scrape config).
"""

from __future__ import annotations

import base64
import binascii
import hmac

import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, request
from quart_trio import QuartTrio

from ..actors.node import Node
from ..backends.base import BackendUnavailable
from ..config import Settings

DEPTH_TIMEOUT = 2.0


async def refresh(node: Node) -> None:
    """Set the gauges that are read from a backend rather than counted as things happen."""
    with trio.move_on_after(DEPTH_TIMEOUT):
        try:
            depths = await node.broker.depths()
            by_priority = await node.broker.pending_by_priority()
            queues = await node.queue_views()
        except BackendUnavailable:
            return
        # a queue that emptied leaves its series: cleared and set again without an await
        m = node.metrics
        for gauge in (m.queue_pending, m.queue_paused, m.queue_unserved):
            gauge.clear()
        for q in queues:
            m.queue_pending.labels(q["name"]).set(q["pending"])
            if q["paused"]:
                m.queue_paused.labels(q["name"]).set(1)
            for u in q["unserved"]:
                m.queue_unserved.labels(u["queue"], u["type"]).set(u["pending"])
        for state, n in depths.items():
            node.metrics.queue_depth.labels(state).set(n)
        for priority, n in by_priority.items():
            node.metrics.queue_depth_by_priority.labels(str(priority)).set(n)


def _authorized(settings: Settings, header: str) -> bool:
    """Whether the Authorization header carries what METRICS_* asks for (any, if both set)."""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if settings.metrics_bearer_token and scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), settings.metrics_bearer_token.encode())
    if settings.metrics_basic_auth and scheme.lower() == "basic":
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, settings.metrics_basic_auth.encode())
    return False


def create_metrics_app(node: Node) -> QuartTrio:
    app = QuartTrio("jobtrio-metrics", static_folder=None)
    settings = node.settings
    protected = bool(settings.metrics_bearer_token or settings.metrics_basic_auth)
    challenge = "Bearer" if settings.metrics_bearer_token else 'Basic realm="jobtrio metrics"'

    @app.get("/metrics")
    async def metrics() -> Response:
        if protected and not _authorized(settings, request.headers.get("Authorization", "")):
            return Response(
                "metrics need credentials (METRICS_BEARER_TOKEN or METRICS_BASIC_AUTH)\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": challenge},
            )
        await refresh(node)
        return Response(node.metrics.render(), content_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def root() -> Response:
        return Response("jobtrio metrics: see /metrics\n", content_type="text/plain")

    return app
