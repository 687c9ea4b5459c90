"""A re-armable wake-up: many ``set()`` calls, waiters woken once each round."""

from __future__ import annotations

import trio


class Wakeup:
    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until set or ``timeout`` passes; True if set. Re-arms either way."""
        with trio.move_on_after(timeout):
            await self._event.wait()
        fired = self._event.is_set()
        if fired:
            self._event = trio.Event()
        return fired
