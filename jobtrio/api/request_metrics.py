"""Time every HTTP API request into ``api_request_duration_seconds``.

Labelled by method, by the route's rule (``/api/v1/jobs/<job_id>``, never the
raw path, so ids do not make one series each; ``unmatched`` for a path no
route serves) and by status, which covers the JSON errors too: Quart runs
``after_request`` on the response an error handler made.
"""

from __future__ import annotations

import time

from quart import Response, g, request
from quart_trio import QuartTrio

from ..metrics import NodeMetrics

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def install_request_metrics(app: QuartTrio, metrics: NodeMetrics) -> None:
    @app.before_request
    async def start_timer() -> None:
        g.jobtrio_started = time.perf_counter()

    @app.after_request
    async def observe(response: Response) -> Response:
        started = g.get("jobtrio_started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            method = request.method if request.method in _METHODS else "other"
            metrics.api_requests.labels(method, rule, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response
