"""Whether the Broker answers, as the claim loop and the finisher last found it.

Both meet the Broker; whichever call failed or succeeded last sets the
node's view (its status page and ``backend_up{backend="broker"}``), and the
change is logged once, not at each failed try.
"""

from __future__ import annotations

import logging

from ...metrics import NodeMetrics

log = logging.getLogger("jobtrio.dispatcher")

#: (first, maximum) seconds between tries of a claim or a finish while the Broker is down.
BROKER_RETRY = (0.05, 5.0)


class BrokerHealth:
    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics
        self.healthy = True
        self.last_error: str | None = None
        #: Marked at least once (the gauge is set from the first answer on).
        self.marked = False

    def mark(self, healthy: bool, error: str | None) -> None:
        if healthy != self.healthy:
            if healthy:
                log.info("broker is back")
            else:
                log.warning("broker unavailable: %s", error)
        self.healthy = healthy
        self.last_error = error
        self.marked = True
        self._metrics.backend_up.labels("broker").set(1 if healthy else 0)
