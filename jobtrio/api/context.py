"""How a route reaches the node it serves, and the body limits it enforces.

The node lives in ``app.extensions`` rather than in a closure so routes can
be plain module-level functions in blueprints (and so the auth change can
wrap them); one app serves exactly one node.
"""

from __future__ import annotations

from quart import current_app

from ..actors.node import Node
from ..config import Settings

NODE_KEY = "jobtrio.node"
#: Room for the JSON around a maximal payload (type, priority, quoting, escapes).
BODY_SLACK_BYTES = 64 * 1024
#: A batch may be bigger than one job, up to this many bytes or one job's limit.
BATCH_BODY_BYTES = 32 * 1024 * 1024
MAX_BATCH_JOBS = 10_000


def current_node() -> Node:
    return current_app.extensions[NODE_KEY]  # type: ignore[no-any-return]


def storage_name(node: Node) -> str:
    """The backends actually in use (``sqlite``, ``redis+mongodb``...), not the configured ones."""
    broker, store = node.broker.name, node.store.name
    return broker if broker == store else f"{broker}+{store}"


def job_body_limit(settings: Settings) -> int:
    """Largest body of a single-job request: the payload limit plus the JSON around it."""
    return settings.max_payload_bytes + BODY_SLACK_BYTES


def batch_body_limit(settings: Settings) -> int:
    """Largest body any route reads; it is also Quart's MAX_CONTENT_LENGTH."""
    return max(BATCH_BODY_BYTES, job_body_limit(settings))
