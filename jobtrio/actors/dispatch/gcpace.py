"""The garbage collector's pace while a dispatcher runs: a larger young generation.

CPython collects its youngest generation each time 700 more container
objects were made than freed (``gc.get_threshold()[0]``). A claim's reply
makes hundreds at once (each job a ``Job``, its dicts, lists and attempts,
its ``Lease`` and in-flight entry), so a draining node collected every claim
or two: each collection walked the jobs still in flight, which survived it,
were promoted, and were walked again by the older generations' collections
until the whole heap was (two full collections of about 55 ms each in a
drain of 20,000 noop jobs). Measured with ``gc.callbacks`` over that drain
(one node, 10 workers, Redis): 7-10 us a job of the node's 60-70 us of CPU
went to the collector, 0.1 us with the threshold at 7,000, since these
objects are freed by their reference counts long before 7,000 more are
made: the collections found nothing to free.

The threshold is raised, never lowered (a process that set a larger one, or
disabled the collector, is left alone), for as long as a dispatcher runs in
the process, and restored when the last one stops.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: The youngest generation's threshold while a dispatcher runs (CPython's default: 700).
YOUNG_THRESHOLD = 7000

_running = 0
#: The thresholds before the first holder raised them, and the value it set.
_saved: tuple[int, int, int] | None = None
_raised = 0


@contextmanager
def young_generation(threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Hold the youngest generation's threshold at ``threshold`` at least (see the module
    doc) while the block runs; nested and concurrent holders share the first one's save."""
    global _running, _saved, _raised
    if _running == 0:
        current = gc.get_threshold()
        if 0 < current[0] < threshold:
            _saved, _raised = current, threshold
            gc.set_threshold(threshold, current[1], current[2])
    _running += 1
    try:
        yield
    finally:
        _running -= 1
        if _running == 0 and _saved is not None:
            # a threshold someone set meanwhile is theirs: restore only what we set
            if gc.get_threshold()[0] == _raised:
                gc.set_threshold(*_saved)
            _saved = None
