"""While a dispatcher runs, the collector's youngest generation is larger (see gcpace)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from jobtrio.actors.dispatch.gcpace import YOUNG_THRESHOLD, young_generation
from jobtrio.jobs import JobStatus
from tests.test_node import running_node, terminal
from tests.waiting import wait_until


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def test_raised_while_held_restored_by_the_last_holder(thresholds: None) -> None:
    with young_generation():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        with young_generation():
            assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)  # the first holder still runs
    assert gc.get_threshold() == (700, 10, 10)


def test_a_larger_threshold_or_a_disabled_collector_is_left_alone(thresholds: None) -> None:
    gc.set_threshold(50_000, 10, 10)
    with young_generation():
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (50_000, 10, 10)
    gc.set_threshold(0, 10, 10)
    with young_generation():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)


def test_a_threshold_set_while_held_is_kept(thresholds: None) -> None:
    with young_generation():
        gc.set_threshold(1000, 20, 20)
    assert gc.get_threshold() == (1000, 20, 20)


async def test_a_running_node_holds_it_and_a_stopped_one_does_not(
    thresholds: None, autojump_clock: object
) -> None:
    async with running_node() as node:
        # the node's supervisor starts its dispatcher once the node runs
        await wait_until(lambda: gc.get_threshold()[0] == YOUNG_THRESHOLD)
        job = await node.submit({"type": "echo"})
        assert (await terminal(node, job.id)).status == JobStatus.COMPLETED
    assert gc.get_threshold() == (700, 10, 10)
