"""Faults a chaos test injects into a real ``jobtrio serve`` process. Test use only.

Two environment variables, read once at start-up by ``server.py`` and
nowhere else, so a production node without them runs exactly the code it
always did (the wall clock unchanged, no check on the peer transport):

- ``JOBTRIO_TEST_CLOCK_OFFSET``: seconds (may be negative or fractional)
  added to every wall-clock reading the node takes (``Node.clock``: leases,
  schedules, records, elections' timestamps). It skews one node as an
  unsynchronised host would be, without touching the machine's clock.
- ``JOBTRIO_TEST_PARTITION_FILE``: a path. While a file exists there, the
  node's peer transport drops every message it would send to a peer and
  every message a peer sends it: the node is cut off from the cluster (not
  from Redis, nor from its HTTP clients), as on the far side of a network
  partition. Creating and removing the file cuts and heals it at run time.

``jobtrio chaos`` and ``tests/chaos`` set them; docs/chaos.md describes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from .config import ConfigError

CLOCK_OFFSET_ENV = "JOBTRIO_TEST_CLOCK_OFFSET"
PARTITION_FILE_ENV = "JOBTRIO_TEST_PARTITION_FILE"


class FaultConfigError(ConfigError):
    """A test fault variable holds something unusable; the message names it."""


def clock_offset(env: Mapping[str, str] = os.environ) -> float:
    """The configured clock offset in seconds (0 when unset)."""
    text = env.get(CLOCK_OFFSET_ENV, "").strip()
    if not text:
        return 0.0
    try:
        offset = float(text)
    except ValueError:
        raise FaultConfigError(f"{CLOCK_OFFSET_ENV}={text!r} is not a number of seconds") from None
    if offset != offset or abs(offset) > 365 * 86400:
        raise FaultConfigError(f"{CLOCK_OFFSET_ENV}={text!r} must be within a year of 0")
    return offset


def wall_clock(env: Mapping[str, str] = os.environ) -> Callable[[], float]:
    """``time.time`` itself when no offset is set, else ``time.time() + offset``."""
    offset = clock_offset(env)
    if offset == 0.0:
        return time.time
    return lambda: time.time() + offset


def partition_switch(env: Mapping[str, str] = os.environ) -> Callable[[], bool] | None:
    """A function telling whether the node is cut off now, or None when no switch is set."""
    path = env.get(PARTITION_FILE_ENV, "").strip()
    if not path:
        return None
    return lambda: os.path.exists(path)
