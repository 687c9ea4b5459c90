"""Wait for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[T]] | Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> T:
    """Poll ``condition`` (sync or async) until truthy; fail the test after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = condition()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value  # type: ignore[return-value]
            await trio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def wait_until_sync(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
