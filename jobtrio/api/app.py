"""The Quart-Trio application: one node's REST surface.

``create_app(node)`` assembles the blueprints (``jobs``, ``schedules``,
``cluster``, ``ops``, the ``events`` websocket and the ``dashboard``), the
request timing of ``api_request_duration_seconds``, the error handlers that
give every failure one JSON shape, and the body limits. The node must be
running for the routes to be useful, but the app holds no state of its own:
``server.serve`` runs it under hypercorn in the node's nursery, tests drive
it with ``app.test_client()``.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from ..actors.node import Node
from . import cluster, dashboard, events, jobs, ops, schedules
from .auth import AUTHORIZER_KEY, Authorizer
from .context import NODE_KEY, batch_body_limit
from .errors import register_error_handlers
from .request_metrics import install_request_metrics


def create_app(node: Node, *, authorizer: Authorizer | None = None) -> QuartTrio:
    app = QuartTrio("jobtrio", static_folder=None)
    # the largest body any route reads (a batch); single-job routes check a lower limit
    app.config["MAX_CONTENT_LENGTH"] = batch_body_limit(node.settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[NODE_KEY] = node
    if authorizer is not None:
        app.extensions[AUTHORIZER_KEY] = authorizer
    register_error_handlers(app)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(schedules.bp)
    app.register_blueprint(cluster.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(dashboard.bp)
    install_request_metrics(app, node.metrics)

    @app.after_request
    async def tag_node(response: Response) -> Response:
        # in a cluster behind a balancer, which node answered is the first question
        response.headers["X-Jobtrio-Node"] = node.node_id
        return response

    return app
