"""Time every HTTP API request into ``api_request_duration_seconds``.

Labelled by method, by the route's rule (``/api/v1/jobs/<job_id>``, never the
raw path, so ids do not make one series each; ``unmatched`` for a path no
route serves) and by status, which covers the JSON errors too: Quart runs
``after_request`` on the response an error handler made.

The clock starts when Quart makes the request object (``TimedRequest``), not
in a ``before_request`` hook, and the app's one ``after_request`` hook
(``create_app``'s) calls ``RequestTimer.observe``: each hook Quart runs costs
a lookup of the request's blueprints and an ``ensure_async`` check per request,
and the labelled series are kept here once made (prometheus-client's
``labels()`` takes a lock and validates the values at every call). The request
class also keeps each endpoint's blueprint names (``TimedRequest.blueprints``),
which Quart works out again for each of its hooks.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram
from quart import Response
from quart_trio.wrappers import TrioRequest

from ..metrics import NodeMetrics

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_clock = time.perf_counter


#: The blueprint names of each endpoint seen (``TimedRequest.blueprints``): the routes'.
_blueprints: dict[str, list[str]] = {}


class TimedRequest(TrioRequest):
    """The app's request class: a request that knows when it was made, and its blueprints
    once for each endpoint."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.jobtrio_started = _clock()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def blueprints(self) -> list[str]:
        """Quart's ``blueprints``, which it works out again for each hook it runs: three
        times a request (before it, after it, at its teardown), at six readings of
        ``endpoint`` and an import statement each time. Quart's is the same list each
        time for an endpoint (``_split_blueprint_path`` is cached), and so is this."""
        rule = self.url_rule
        if rule is None:
            return []
        names = _blueprints.get(rule.endpoint)
        if names is None:
            names = _blueprints[rule.endpoint] = super().blueprints
        return names


class RequestTimer:
    """Observes one request's duration under its (method, route, status) series."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._histogram = metrics.api_requests
        self._series: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, request: TrioRequest, response: Response) -> None:
        started = getattr(request, "jobtrio_started", None)
        if started is None:
            return
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        key = (method, route, response.status_code)
        series = self._series.get(key)
        if series is None:
            series = self._histogram.labels(method, route, str(response.status_code))
            self._series[key] = series
        series.observe(_clock() - started)
