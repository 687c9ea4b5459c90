"""The queue routes: list queues, pause and resume one, set or clear its rate limit.

Pause and rate limits live in the Broker (``Broker.set_queue``), not in any
node, so a change made through any node holds for every node at its next
claim and survives the failover of any of them. Values are absolute (pause
twice is paused), so a retried request is harmless. Changing a queue is an
admin's move; any role reads them.
"""

from __future__ import annotations

import math
from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..backends.base import RateLimit
from ..durations import parse_duration
from ..jobs import ValidationError
from ..submission import check_queue_name
from .auth import Role, require
from .context import current_node
from .errors import BadRequest, Unprocessable
from .parsing import read_json_object, reject_unknown

bp = Blueprint("queues", __name__)

#: Most jobs a rate limit may allow per interval, and the interval's bounds (seconds).
MAX_RATE_JOBS = 1_000_000
MIN_RATE_PER = 0.001
MAX_RATE_PER = 86400.0
#: A rate limit's body is two small fields.
RATE_BODY_LIMIT = 1024


def _name(name: str) -> str:
    """A queue name from the path, or a 400 naming it."""
    try:
        return check_queue_name(name)
    except ValidationError as exc:
        raise BadRequest("invalid_queue", exc.message, "queue") from None


def parse_rate_limit(data: dict[str, Any]) -> RateLimit:
    """``{"jobs": N, "per": "10s" | seconds}`` as a ``RateLimit``, or a 422 naming the field."""
    for key in data:
        if key not in ("jobs", "per"):
            raise Unprocessable("unknown_field", f"unknown field {key!r}; give jobs and per", key)
    for name in ("jobs", "per"):
        if name not in data:
            raise Unprocessable(
                "missing_field",
                f'{name} is missing: a rate limit is {{"jobs": N, "per": "10s"}}, at most '
                "N claims from the queue per interval (per: seconds, or text such as 500ms)",
                name,
            )
    jobs = data.get("jobs")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_RATE_JOBS:
        raise Unprocessable(
            "invalid", f"jobs must be a whole number from 1 to {MAX_RATE_JOBS}", "jobs"
        )
    per = data.get("per")
    seconds: float
    if isinstance(per, str):
        try:
            seconds = parse_duration(per)
        except ValueError:
            seconds = math.nan
    elif isinstance(per, int | float) and not isinstance(per, bool):
        try:
            seconds = float(per)
        except OverflowError:  # an integer of 400 digits: out of range (it was a 500)
            seconds = math.inf
    else:
        seconds = math.nan
    if not MIN_RATE_PER <= seconds <= MAX_RATE_PER:
        raise Unprocessable(
            "invalid",
            f"per must be a duration from {MIN_RATE_PER:g}s to {MAX_RATE_PER:g}s "
            "(seconds, or text such as 500ms, 10s, 1m)",
            "per",
        )
    return RateLimit(jobs, seconds)


@bp.get("/api/v1/queues")
@require(Role.WORKER)
async def list_queues() -> Response:
    reject_unknown(request.args, ())
    queues = await current_node().queue_views()
    return jsonify(
        {
            "queues": queues,
            "count": len(queues),
            "unserved": [u for q in queues for u in q["unserved"]],
        }
    )


@bp.get("/api/v1/queues/<name>")
@require(Role.WORKER)
async def get_queue(name: str) -> Response:
    reject_unknown(request.args, ())
    [view] = await current_node().queue_views(_name(name))
    return jsonify(view)


@bp.post("/api/v1/queues/<name>/pause")
@require(Role.ADMIN)
async def pause_queue(name: str) -> Response:
    reject_unknown(request.args, ())
    return jsonify(await current_node().set_queue(_name(name), paused=True))


@bp.post("/api/v1/queues/<name>/resume")
@require(Role.ADMIN)
async def resume_queue(name: str) -> Response:
    reject_unknown(request.args, ())
    return jsonify(await current_node().set_queue(_name(name), paused=False))


@bp.put("/api/v1/queues/<name>/rate_limit")
@require(Role.ADMIN)
async def set_rate_limit(name: str) -> Response:
    reject_unknown(request.args, ())
    queue = _name(name)
    limit = parse_rate_limit(await read_json_object(RATE_BODY_LIMIT))
    return jsonify(await current_node().set_queue(queue, rate_limit=limit))


@bp.delete("/api/v1/queues/<name>/rate_limit")
@require(Role.ADMIN)
async def clear_rate_limit(name: str) -> Response:
    reject_unknown(request.args, ())
    return jsonify(await current_node().set_queue(_name(name), clear_rate_limit=True))
