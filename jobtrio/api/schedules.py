"""The periodic-job routes: list, create or replace, get and delete schedules.

A schedule lives in one of two places. Those registered in code (``source:
"code"``) belong to the deployment: every node has them from start-up, so
the API shows them but refuses to replace or delete them (409), as a change
made over HTTP would be silently undone by the next deploy. Those posted
here (``source: "api"``) live in the Store, where every node's leader duty
re-reads them, so a schedule posted to any node fires cluster-wide.

``POST`` creates or replaces by name (a schedule is identified by its name,
not by a server-made id), which is what makes it safe for a deploy script to
post the same schedules on every run.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..jobs import ValidationError, to_iso
from ..schedules import NAME_PATTERN, Schedule
from .auth import Role, require
from .context import current_node, job_body_limit
from .errors import Conflict, NotFound
from .parsing import read_json_object, reject_unknown

bp = Blueprint("schedules", __name__)

#: The ValidationError code the node uses for a name that belongs to a code schedule.
CONFLICT = "conflict"


def _view(schedule: Schedule, now: float) -> dict[str, Any]:
    """The shape ``Node.list_schedules`` gives, so a created schedule reads like a listed one."""
    return {**schedule.to_dict(), "next_tick": to_iso(schedule.next_tick(now))}


async def _find(name: str) -> dict[str, Any]:
    # a name the validator could never accept cannot name a schedule: 404, not 400
    if NAME_PATTERN.match(name):
        for item in await current_node().list_schedules():
            if item["name"] == name:
                return item
    raise NotFound(f"no schedule named {name[:100]!r}")


@bp.get("/api/v1/schedules")
@require(Role.USER)
async def list_schedules() -> Response:
    reject_unknown(request.args, ())
    items = await current_node().list_schedules()
    return jsonify({"schedules": items, "count": len(items)})


@bp.post("/api/v1/schedules")
@require(Role.ADMIN)
async def put_schedule() -> Response:
    node = current_node()
    reject_unknown(request.args, ())
    data = await read_json_object(job_body_limit(node.settings))
    try:
        schedule = await node.put_schedule(data)
    except ValidationError as exc:
        if exc.code == CONFLICT:
            raise Conflict(CONFLICT, exc.message, exc.field) from None
        raise
    response = jsonify(_view(schedule, node.clock()))
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/schedules/{schedule.name}"
    return response


@bp.get("/api/v1/schedules/<name>")
@require(Role.USER)
async def get_schedule(name: str) -> Response:
    reject_unknown(request.args, ())
    return jsonify(await _find(name))


@bp.delete("/api/v1/schedules/<name>")
@require(Role.ADMIN)
async def delete_schedule(name: str) -> Response:
    reject_unknown(request.args, ())
    schedule = await _find(name)
    if schedule["source"] == "code":
        raise Conflict(
            CONFLICT,
            f"schedule {name!r} is defined in code and cannot be deleted over the API; "
            "remove it from the code",
            "name",
        )
    if not await current_node().delete_schedule(name):
        # deleted by someone else between the lookup and now
        raise NotFound(f"no schedule named {name!r}")
    return jsonify({"name": name, "deleted": True})
