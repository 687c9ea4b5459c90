"""Deterministic simulation of whole clusters, with fault injection.

The production actors and state machines run unchanged inside one trio run
under ``MockClock``; the network, the clock, the shared Broker/Store and the
faults are simulated, and one seed fixes all of it. See :mod:`.runner` for a
run's phases, :mod:`.determinism` for how a seed replays, :mod:`.checker`
and :mod:`.backends` for the invariants.
"""

from .runner import FAULT_KINDS, SimConfig, SimResult, run

__all__ = ["FAULT_KINDS", "SimConfig", "SimResult", "run"]
