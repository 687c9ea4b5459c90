"""Routes for orchestrators and tooling: liveness, readiness, the API description.

``/health`` is liveness: 200 as long as the node runs, even with a backend
down (``"status": "degraded"``), because restarting a node does not bring
Redis back. ``/ready`` is readiness: 503 naming the backend that is down, so
a load balancer sends submissions elsewhere until it is back. Neither needs
credentials: probes carry none.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from .context import current_node, storage_name
from .errors import error_body

bp = Blueprint("ops", __name__)


def _version() -> str:
    try:
        return importlib.metadata.version("jobtrio")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


def _life_state() -> str:
    node = current_node()
    if node.stopping:
        return "stopping"
    return "running" if node.running else "starting"


@bp.get("/health")
async def health() -> Response:
    node = current_node()
    backends = await node.backend_health()
    state = _life_state()
    if state != "running":
        status = state
    else:
        status = "ok" if all(b.healthy for b in backends) else "degraded"
    body: dict[str, Any] = {
        "status": status,
        "node_id": node.node_id,
        "version": VERSION,
        "leader": node.leadership.view.leader_id,
        "is_leader": node.leadership.is_leader,
        "uptime_seconds": None
        if node.started_at is None
        else round(node.clock() - node.started_at, 3),
        "storage": storage_name(node),
        "backends": [dataclasses.asdict(b) for b in backends],
    }
    response = jsonify(body)
    response.status_code = 200 if state == "running" else 503
    return response


@bp.get("/ready")
async def ready() -> Response:
    node = current_node()
    backends = await node.backend_health()
    state = _life_state()
    body: dict[str, Any] = {
        "ready": False,
        "node_id": node.node_id,
        "backends": [dataclasses.asdict(b) for b in backends],
    }
    down = [b for b in backends if not b.healthy]
    if state != "running":
        body.update(error_body(f"node_{state}", f"the node is {state}"))
    elif down:
        first = down[0]
        body.update(
            error_body(
                "backend_unavailable",
                "; ".join(f"the {b.kind} ({b.name}) is down: {b.error}" for b in down),
                first.kind,
            )
        )
    else:
        body["ready"] = True
    response = jsonify(body)
    response.status_code = 200 if body["ready"] else 503
    if not body["ready"]:
        response.headers["Retry-After"] = "1"
    return response


@bp.get("/openapi.json")
async def openapi() -> Response:
    from .openapi import build_spec

    return jsonify(build_spec(current_app, VERSION))
