"""Restart crashed actors with backoff, so one bug never silently kills a node.

An actor is an async function that runs until cancelled. If it raises, the
supervisor logs the traceback, reports the restart (metrics, events), waits
(0.1 s doubling to ``max_backoff``) and starts it again; a run that lasted
longer than ``stable_after`` resets the backoff. Cancellation is not a crash:
it passes straight through, so stopping a node stops its actors whole.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..backoff import Backoff

log = logging.getLogger("jobtrio.supervisor")

OnRestart = Callable[[str, BaseException, int], None]


async def supervise(
    name: str,
    actor: Callable[[], Awaitable[object]],
    *,
    on_restart: OnRestart | None = None,
    initial_backoff: float = 0.1,
    max_backoff: float = 10.0,
    stable_after: float = 30.0,
) -> None:
    backoff = Backoff(initial_backoff, max_backoff)
    restarts = 0
    while True:
        started = trio.current_time()
        try:
            await actor()
            return
        except Exception as exc:
            restarts += 1
            if trio.current_time() - started > stable_after:
                backoff.reset()
            delay = backoff.next()
            log.error(
                "actor %s crashed (restart %d in %.1fs): %r",
                name,
                restarts,
                delay,
                exc,
                exc_info=exc,
            )
            if on_restart is not None:
                on_restart(name, exc, restarts)
            await trio.sleep(delay)
