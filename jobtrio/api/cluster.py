"""The node and cluster views: stats, workers, members, leader, elections.

These read what the node already knows (its own counters, its leadership
view, its membership view) and never block on other nodes, so an operator
can still ask a node what it thinks while the cluster is in trouble. The
one exception is the leadership history (``/api/v1/elections``): it lives
in the Store, because a node only remembers the leaderships it saw itself.
Times are ISO 8601 on the wire, like the job routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from quart import Blueprint, Response, jsonify, request

from ..backends.base import BackendUnavailable
from ..jobs import to_iso
from .algorithms import ALGORITHMS, describe
from .auth import Role, require
from .context import current_node, storage_name
from .errors import BadRequest, NotFound
from .parsing import parse_limit, reject_unknown

bp = Blueprint("cluster", __name__)

_TIME_FIELDS = ("last_contact", "last_seen", "since", "started_at", "at")
DEFAULT_ELECTIONS = 50
MAX_ELECTIONS = 1000


def _iso_times(item: Mapping[str, Any], names: Iterable[str] = _TIME_FIELDS) -> dict[str, Any]:
    """Unix-seconds fields of a node view, as the ISO strings every other route uses."""
    out = dict(item)
    for name in names:
        value = out.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = to_iso(float(value))
    return out


async def _members() -> list[dict[str, Any]]:
    return [_iso_times(m) for m in await current_node().members()]


def _leader_url(members: list[dict[str, Any]], leader: str | None) -> str | None:
    for member in members:
        if member.get("node_id") == leader:
            return member.get("api_url") or None
    return None


async def _election() -> dict[str, Any]:
    node = current_node()
    info = _iso_times(node.election_info(), ("since",))
    if info.get("leader") is None:
        info["since"] = None
    # the Broker's newest fencing epoch: the one number every node reports alike,
    # whatever the algorithm (a gossip term is local to each node)
    try:
        info["fencing_epoch"] = await node.broker.current_epoch()
    except BackendUnavailable:
        info["fencing_epoch"] = None
    return info


@bp.get("/api/v1/stats")
@require(Role.WORKER)
async def stats() -> Response:
    reject_unknown(request.args, ())
    return jsonify(await current_node().stats())


@bp.get("/api/v1/workers")
@require(Role.ADMIN)
async def workers() -> Response:
    reject_unknown(request.args, ("scope",))
    scope = (request.args.get("scope") or "cluster").strip().lower()
    node = current_node()
    if scope == "local":
        # what peers ask each other: only this node's workers, no fan-out
        items = node.workers()
    elif scope == "cluster":
        items = await node.cluster_workers()
    else:
        raise BadRequest(
            "invalid_parameter", f"scope must be cluster or local, got {scope!r}", "scope"
        )
    return jsonify({"workers": items, "count": len(items), "scope": scope})


@bp.get("/api/v1/nodes")
@require(Role.ADMIN)
async def nodes() -> Response:
    reject_unknown(request.args, ())
    items = await _members()
    return jsonify({"nodes": items, "count": len(items)})


@bp.get("/api/v1/leader")
@require(Role.WORKER)
async def leader() -> Response:
    reject_unknown(request.args, ())
    node = current_node()
    info = await _election()
    return jsonify(
        {
            "leader": info["leader"],
            "leader_url": _leader_url(await _members(), info["leader"]),
            "is_self": info["leader"] == node.node_id,
            "node_id": node.node_id,
            "algorithm": info["algorithm"],
            "term": info["term"],
            "since": info["since"],
        }
    )


@bp.get("/api/v1/election")
@require(Role.USER)
async def election() -> Response:
    reject_unknown(request.args, ())
    return jsonify(await _election())


@bp.get("/api/v1/elections")
@require(Role.USER)
async def elections() -> Response:
    reject_unknown(request.args, ("limit",))
    limit = parse_limit(request.args, "limit", DEFAULT_ELECTIONS, MAX_ELECTIONS)
    items = [_iso_times(e) for e in await current_node().store.list_elections(limit)]
    return jsonify({"elections": items, "count": len(items)})


@bp.get("/api/v1/election/algorithms")
@require(Role.USER)
async def algorithms() -> Response:
    reject_unknown(request.args, ())
    current = current_node().settings.election_algorithm
    items = [describe(name, current) for name in ALGORITHMS]
    return jsonify({"algorithms": items, "current": current})


@bp.get("/api/v1/election/algorithms/<algorithm>")
@require(Role.USER)
async def algorithm(algorithm: str) -> Response:
    reject_unknown(request.args, ())
    info = describe(algorithm, current_node().settings.election_algorithm)
    if info is None:
        raise NotFound(
            f"no election algorithm {algorithm[:40]!r}; use one of {', '.join(ALGORITHMS)}",
            code="unknown_algorithm",
        )
    return jsonify(info)


@bp.get("/api/v1/cluster")
@require(Role.ADMIN)
async def cluster() -> Response:
    reject_unknown(request.args, ())
    node = current_node()
    info = await _election()
    members = await _members()
    return jsonify(
        {
            "node_id": node.node_id,
            "leader": info["leader"],
            "leader_url": _leader_url(members, info["leader"]),
            "is_leader": info["leader"] == node.node_id,
            "term": info["term"],
            "epoch": info["epoch"],
            "fencing_epoch": info["fencing_epoch"],
            "algorithm": info["algorithm"],
            "since": info["since"],
            "storage": storage_name(node),
            "size": len(members),
            "alive": sum(1 for m in members if m.get("state") == "alive"),
            "members": members,
        }
    )
