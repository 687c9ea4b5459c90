"""Progress reports (``JobContext.progress``), coalesced into one Broker move.

A report only replaces its job's latest one in a table here, and a loop
writes the table in one ``Broker.progress`` move, then waits
``PROGRESS_INTERVAL`` before the next. A processor reporting a thousand times
a second costs the Broker four writes a second; jobs that do not report cost
nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from ...backends.base import BackendUnavailable, Broker, ProgressReport
from ...events import EventBus
from ...eventstream import job_fields
from ...jobs import make_progress
from ..recorder import Recorder
from ..signals import Wakeup
from .flights import Flights

log = logging.getLogger("jobtrio.dispatcher")

#: Seconds between two writes of the progress reports (each write carries the latest
#: report of every job that reported since the last one).
PROGRESS_INTERVAL = 0.25


class ProgressReports:
    def __init__(
        self,
        broker: Broker,
        flights: Flights,
        recorder: Recorder,
        events: EventBus,
        clock: Callable[[], float],
    ) -> None:
        self._broker = broker
        #: Tells whether a reporting attempt still runs here (a late report is dropped).
        self._flights = flights
        self._recorder = recorder
        self._events = events
        self._clock = clock
        #: job id -> its latest progress report not yet written (see ``run``).
        self._latest: dict[str, ProgressReport] = {}
        self._wakeup = Wakeup()

    def report(self, job_id: str, token: str, fraction: float, message: str | None) -> None:
        """Keep ``job_id``'s latest report for the next write (raises on a bad fraction)."""
        progress = make_progress(fraction, message, self._clock())
        flight = self._flights.get(job_id)
        if flight is None or flight.finished or flight.lease.token != token:
            return  # the attempt is over: its report would be refused anyway
        progress["attempt"] = len(flight.lease.job.attempts)
        self._latest[job_id] = ProgressReport(job_id, token, progress)
        self._wakeup.set()

    async def run(self) -> None:
        """Write the latest reports, one Broker move per ``PROGRESS_INTERVAL`` at most."""
        while True:
            await self._wakeup.wait(math.inf)
            reports, self._latest = list(self._latest.values()), {}
            if reports:
                try:
                    jobs = await self._broker.progress(reports, self._clock())
                except BackendUnavailable as exc:
                    # a report is a view, not a state change: the next one replaces it
                    log.info("%d progress reports dropped: %s", len(reports), exc)
                    jobs = []
                accepted = [job for job in jobs if job is not None]
                self._recorder.record(accepted)
                if self._events.has_subscribers:
                    for job in accepted:
                        self._events.publish(
                            "job.progress", job=job_fields(job), progress=job.progress
                        )
            await trio.sleep(PROGRESS_INTERVAL)
