"""One seed fixes a whole simulated run; this module closes the doors chance comes in by.

A run under ``MockClock`` has four sources of choice, and each is pinned here
or by the code that builds the cluster:

1. The actors' own randomness (SWIM probe order, Raft timeouts, job ids,
   retry jitter, the balancer): every ``random.Random`` they get is seeded
   with :func:`derive` from the run's seed and a label naming its owner, so
   adding a node or a consumer does not shift anyone else's stream.
2. trio's scheduler: the order in which a batch of runnable tasks runs.
   trio 0.35 shuffles each batch with its module-level ``_r``; with
   ``_ALLOW_DETERMINISTIC_SCHEDULING`` set it first sorts the batch by task
   creation order, so a seeded ``_r`` gives the same order every time (its
   own ``test_scheduler_determinism.py`` and Hypothesis plugin do exactly
   this). :func:`deterministic_scheduling` sets both for one run, then
   restores them, so the rest of the process keeps trio's default.
3. Lease tokens, made with ``os.urandom``: the run's Broker is given
   :func:`seeded_tokens` instead (``MemoryBroker(tokens=...)``).
4. Time: MockClock starts at 0 and autojumps; nodes read
   ``EPOCH + trio.current_time()``, never the wall clock.

Python's string hashing (``PYTHONHASHSEED``) would be a fifth: the code on the
simulated path iterates sorted collections or insertion-ordered dicts, never
sets of ids, so a trace does not depend on it (a test replays one seed in
processes with different hash seeds to keep it that way).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

#: The simulated wall clock at trio time 0 (2023-11-14T22:13:20Z), so records look real.
EPOCH = 1_700_000_000.0


def derive(seed: int, *labels: object) -> int:
    """A 64-bit seed for one consumer, independent of every other consumer's."""
    text = "/".join([str(seed), *(str(label) for label in labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def rng(seed: int, *labels: object) -> random.Random:
    return random.Random(derive(seed, *labels))


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Make trio's run-queue order a function of ``seed`` until the block exits.

    Refuses to run on a trio whose scheduler no longer has the hook, rather
    than silently producing runs that cannot be replayed.
    """
    run = trio._core._run
    if not hasattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not hasattr(run, "_r"):
        raise RuntimeError(
            f"trio {trio.__version__} has no deterministic-scheduling hook "
            "(trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING / _r): runs cannot be replayed"
        )
    saved_flag = run._ALLOW_DETERMINISTIC_SCHEDULING
    saved_state = run._r.getstate()
    setattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (Final in trio)
    run._r.seed(derive(seed, "trio-scheduler"))
    try:
        yield
    finally:
        setattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING", saved_flag)  # noqa: B010
        run._r.setstate(saved_state)


def seeded_tokens(seed: int) -> Callable[[], str]:
    """A source of lease tokens drawn from ``seed``, for the run's Broker (``tokens=``)."""
    source = rng(seed, "lease-tokens")

    def token() -> str:
        return f"{source.getrandbits(96):024x}"

    return token
