"""The workflow routes: submit a chain, group or chord as one; watch it; cancel it.

A workflow's id is its first job's id (``workflows.py``): ``GET`` shows its
state and every member, ``DELETE`` cancels every member that has not ended.
With auth on, a ``user`` sees and cancels only its own workflows (another
user's answers 404, as an unknown id does).

A submission with an ``idempotency_key`` the Broker holds already answers the
workflow that holds it (201, the same id; nothing new is filed), as a job's key
does; a key held by another user's workflow, or by a plain job, is a 409.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from ..actors.node import KeyHeldByJob, WorkflowNotFound
from .auth import Role, owner_scope, require, submitter
from .context import batch_body_limit, current_node
from .errors import Conflict, NotFound
from .parsing import JOB_ID_RE, read_json_object, reject_unknown

bp = Blueprint("workflows", __name__)


async def _view(raw: str) -> dict:
    workflow_id = raw.strip().upper()
    unknown = NotFound(f"no workflow with id {raw[:60]!r}")
    if not JOB_ID_RE.match(workflow_id):
        raise unknown
    try:
        view = await current_node().get_workflow(workflow_id)
    except WorkflowNotFound:
        raise unknown from None
    scope = owner_scope()
    if scope is not None and any(job.get("owner") != scope for job in view["jobs"]):
        raise unknown
    return view


@bp.post("/api/v1/workflows")
@require(Role.USER)
async def submit_workflow() -> Response:
    node = current_node()
    reject_unknown(request.args, ())
    spec = await read_json_object(batch_body_limit(node.settings))
    try:
        view = await node.submit_workflow(spec, submitter())
    except KeyHeldByJob as exc:
        raise Conflict(
            "idempotency_key_taken",
            f"idempotency_key {exc.key!r} belongs to a job that is not a workflow; "
            "choose another key",
            "idempotency_key",
        ) from None
    scope = owner_scope()
    if scope is not None and any(job.get("owner") != scope for job in view["jobs"]):
        raise Conflict(
            "idempotency_key_taken",
            f"idempotency_key {spec['idempotency_key']!r} belongs to a workflow of another "
            "user; choose another key",
            "idempotency_key",
        )
    response = jsonify(view)
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/workflows/{view['id']}"
    return response


@bp.get("/api/v1/workflows/<workflow_id>")
@require(Role.WORKER)
async def get_workflow(workflow_id: str) -> Response:
    reject_unknown(request.args, ())
    return jsonify(await _view(workflow_id))


@bp.delete("/api/v1/workflows/<workflow_id>")
@require(Role.USER)
async def cancel_workflow(workflow_id: str) -> Response:
    reject_unknown(request.args, ())
    view = await _view(workflow_id)  # 404 before any move on one the caller may not see
    return jsonify(await current_node().cancel_workflow(view["id"]))
