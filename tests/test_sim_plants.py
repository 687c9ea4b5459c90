"""Each planted bug is caught on at least 9 of its 10 seeds; the same seeds are clean without it.

A clean seed is evidence only if the simulator would have seen the bug: these
tests run every plant of :mod:`jobtrio.sim.plants` on ``CATCH_SEEDS`` with the
faults that reach its path (``CATCH_CONFIG``), and require the invariant that
names the bug (``CAUGHT_BY``) on at least 9 of the 10. A caught run stops at
the first violation of one of those invariants (``stop_at``), so the file
stays affordable.
"""

from __future__ import annotations

import dataclasses

import pytest

from jobtrio.sim import SimConfig, run
from jobtrio.sim.plants import CATCH_CONFIG, CATCH_SEEDS, CAUGHT_BY, PLANTS
from jobtrio.sim.runner import DEFAULT_FAULTS

#: At least this many of the 10 seeds must catch each plant.
MUST_CATCH = 9


def plant_config(plant: str, seed: int) -> SimConfig:
    c = CATCH_CONFIG[plant]
    return SimConfig(
        seed=seed,
        algorithm=c.algorithm,
        nodes=c.nodes,
        duration=c.duration,
        faults=c.faults if c.faults is not None else DEFAULT_FAULTS,
        plant=plant,
        stop_at=tuple(sorted(CAUGHT_BY[plant])),
    )


def test_every_plant_has_a_catch_configuration() -> None:
    assert set(CATCH_CONFIG) == set(PLANTS) == set(CAUGHT_BY)
    assert len(CATCH_SEEDS) == 10


@pytest.mark.parametrize("plant", PLANTS)
def test_a_planted_bug_is_caught_on_nine_seeds_of_ten(plant: str) -> None:
    caught, missed = [], []
    for seed in CATCH_SEEDS:
        result = run(plant_config(plant, seed))
        found = {v.invariant for v in result.violations}
        (caught if found & CAUGHT_BY[plant] else missed).append((seed, sorted(found)))
    assert len(caught) >= MUST_CATCH, (
        f"{plant} caught on {len(caught)} of {len(CATCH_SEEDS)} seeds; missed {missed}"
    )


@pytest.mark.parametrize("plant", ["resurrect", "tick-at-most-once", "two-clocks", "no-hand-back"])
def test_a_catching_seed_holds_every_invariant_without_its_plant(plant: str) -> None:
    """The violation is the plant's: the same seed, faults and length hold every
    invariant without it, strictly (no known limitation either)."""
    for seed in CATCH_SEEDS:  # the first seed that catches it
        config = plant_config(plant, seed)
        if CAUGHT_BY[plant] & {v.invariant for v in run(config).violations}:
            break
    else:
        pytest.fail(f"{plant} is caught on none of {CATCH_SEEDS}")
    clean = run(dataclasses.replace(config, plant=None, stop_at=()))
    assert clean.ok, [str(v) for v in clean.violations]
    assert clean.known_issues == []
    assert clean.jobs_completed > 0 and clean.drained_after is not None
