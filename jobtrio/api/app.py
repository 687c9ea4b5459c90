"""The Quart-Trio application: the node's REST surface.

Minimal routes for now (submit, get, health); the full API lives here too.
Errors are JSON ``{"error": {"code", "message", "field"}}``: never a
traceback, never internal error text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..actors.node import Node
from ..backends.base import BackendUnavailable
from ..jobs import ValidationError


def error(status: int, code: str, message: str, field: str | None = None) -> tuple[Any, int]:
    return {"error": {"code": code, "message": message, "field": field}}, status


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio("jobtrio")
    app.config["MAX_CONTENT_LENGTH"] = node.settings.max_payload_bytes + 64 * 1024

    @app.post("/api/v1/jobs")
    async def submit() -> Any:
        data = await request.get_json(force=True, silent=True)
        if data is None:
            return error(400, "invalid_json", "the body must be a JSON object")
        try:
            job = await node.submit(data)
        except ValidationError as exc:
            return error(422, exc.code, exc.message, exc.field)
        except BackendUnavailable:
            return error(503, "unavailable", "the queue is unavailable; try again")
        return job.to_dict(), 201

    @app.get("/api/v1/jobs/<job_id>")
    async def get_job(job_id: str) -> Any:
        job = await node.get(job_id)
        if job is None:
            return error(404, "not_found", f"no job with id {job_id!r}")
        return job.to_dict()

    @app.get("/health")
    async def health() -> Any:
        backends = await node.backend_health()
        ok = all(b.healthy for b in backends)
        body = {
            "status": "ok" if ok else "degraded",
            "node_id": node.node_id,
            "leader": node.leadership.view.leader_id,
            "backends": [dataclasses.asdict(b) for b in backends],
        }
        return body, 200

    @app.errorhandler(404)
    async def not_found(_: Exception) -> Any:
        return error(404, "not_found", "no such route")

    @app.errorhandler(Exception)
    async def internal(_: Exception) -> Response | tuple[Any, int]:
        return error(500, "internal", "internal error; see the node's log")

    return app
