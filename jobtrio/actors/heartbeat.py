"""Keep this node's leases alive, and notice the ones it lost.

Every ``JOB_LEASE / 3`` the heartbeat renews every in-flight lease in one
Broker call. A lease the Broker no longer honours (the job was cancelled, or
the lease expired while this node was frozen and another node took the job)
interrupts the local attempt, so a zombie stops working as soon as it wakes.
Renewals run in the trio loop, never behind a job: blocking processors run
off the loop, so a busy job cannot starve its own heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..backends.base import BackendUnavailable, Broker
from .dispatcher import Dispatcher

log = logging.getLogger("jobtrio.heartbeat")


async def lease_heartbeat(
    broker: Broker, dispatcher: Dispatcher, lease_seconds: float, clock: Callable[[], float]
) -> None:
    interval = lease_seconds / 3
    while True:
        await trio.sleep(interval)
        leases = dispatcher.leases()
        if not leases:
            continue
        try:
            lost = await broker.renew(leases, lease_seconds, clock())
        except BackendUnavailable as exc:
            log.warning("could not renew %d leases: %s", len(leases), exc)
            continue
        if lost:
            dispatcher.leases_lost(lost)
