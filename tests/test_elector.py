"""The one leadership loop, standalone and cluster alike, on its own collaborators."""

from __future__ import annotations

from typing import Any

import trio

from jobtrio.actors.elector import Elector, Verdict
from jobtrio.actors.leadership import Leadership
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.events import EventBus
from jobtrio.metrics import NodeMetrics
from tests.waiting import wait_until

TIMEOUT = 2.0


class FlakyBroker(MemoryBroker):
    """Refuses epochs while ``down``, as a Broker restarting does."""

    down = False

    async def acquire_epoch(self, node_id: str, now: float) -> int:
        if self.down:
            raise BackendUnavailable("memory", "restarting")
        return await super().acquire_epoch(node_id, now)


def collaborators(node_id: str, broker: MemoryBroker, store: MemoryStore) -> dict[str, Any]:
    return {
        "leadership": Leadership(node_id, "test"),
        "broker": broker,
        "store": store,
        "events": EventBus(node_id),
        "metrics": NodeMetrics(node_id),
        "clock": trio.current_time,
        "retake_after": TIMEOUT,
    }


async def test_standalone_nodes_on_one_broker_take_turns(autojump_clock: object) -> None:
    """The newest epoch fences the other; the fenced one retakes a timeout later."""
    broker, store = MemoryBroker(), MemoryStore()
    a, b = collaborators("a", broker, store), collaborators("b", broker, store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Elector.alone("a", **a).run)
        await wait_until(lambda: a["leadership"].view.epoch == 1)
        nursery.start_soon(Elector.alone("b", **b).run)
        await wait_until(lambda: b["leadership"].view.epoch == 2)
        fenced_at = trio.current_time()
        a["leadership"].fenced(1)  # what a's duties report on their next write
        await wait_until(lambda: a["leadership"].view.epoch == 3, timeout=3 * TIMEOUT)
        assert trio.current_time() - fenced_at >= TIMEOUT  # turns, not a ping-pong
        assert a["leadership"].view.term == 3  # alone, the epoch is the term
        nursery.cancel_scope.cancel()
    records = await store.list_elections()
    assert sorted((r["leader"], r["epoch"], r["algorithm"]) for r in records) == [
        ("a", 1, "standalone"),
        ("a", 3, "standalone"),
        ("b", 2, "standalone"),
    ]


async def test_a_verdict_for_another_node_sets_no_epoch(autojump_clock: object) -> None:
    broker, store = MemoryBroker(), MemoryStore()
    c = collaborators("a", broker, store)
    verdict = Verdict("b", 4)
    elector = Elector("a", "raft", current=lambda: verdict, members=lambda: ["a", "b"], **c)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(elector.run)
        await wait_until(lambda: c["leadership"].view.leader_id == "b")
        nursery.cancel_scope.cancel()
    view = c["leadership"].view
    assert (view.term, view.epoch) == (4, None)
    assert await broker.current_epoch() == 0


async def test_the_epoch_waits_for_the_broker_and_is_dropped_if_overtaken(
    autojump_clock: object,
) -> None:
    """A verdict for this node outlives a Broker outage; one overtaken meanwhile does not."""
    broker, store = FlakyBroker(), MemoryStore()
    c = collaborators("a", broker, store)
    current = [Verdict("a", 1)]
    elector = Elector("a", "bully", current=lambda: current[0], members=lambda: ["a"], **c)
    broker.down = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(elector.run)
        await trio.sleep(5.0)
        assert c["leadership"].view.epoch is None  # no epoch, no leadership
        broker.down = False
        await wait_until(lambda: c["leadership"].view.epoch == 1)
        assert c["leadership"].view.term == 1

        broker.down = True
        current[0] = Verdict("a", 2)
        elector.verdict(current[0])
        await trio.sleep(1.0)
        current[0] = Verdict("b", 3)  # the election moved on before the Broker came back
        elector.verdict(current[0])
        broker.down = False
        await wait_until(lambda: c["leadership"].view.leader_id == "b")
        nursery.cancel_scope.cancel()
    assert c["leadership"].view.epoch is None
    assert await broker.current_epoch() == 1  # the overtaken verdict took none


async def test_a_fenced_cluster_leader_retakes_only_while_its_election_names_it(
    autojump_clock: object,
) -> None:
    broker, store = MemoryBroker(), MemoryStore()
    c = collaborators("a", broker, store)
    current = [Verdict("a", 7)]
    elector = Elector("a", "gossip", current=lambda: current[0], members=lambda: ["a"], **c)
    leadership: Leadership = c["leadership"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(elector.run)
        await wait_until(lambda: leadership.view.epoch == 1)
        await broker.acquire_epoch("b", 0.0)  # a rival, on the other side of a partition
        leadership.fenced(1)
        await wait_until(lambda: leadership.view.epoch == 3, timeout=3 * TIMEOUT)
        assert leadership.view.term == 7 and not leadership.is_fenced

        current[0] = Verdict("b", 8)  # the election names another node now...
        leadership.fenced(3)  # ...and our epoch is fenced: nothing to retake
        await trio.sleep(3 * TIMEOUT)
        assert leadership.view.epoch == 3 and await broker.current_epoch() == 3
        nursery.cancel_scope.cancel()
