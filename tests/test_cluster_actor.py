"""The cluster actor on its seams: peer messages in, a cancel callback and verdicts out."""

from __future__ import annotations

import math
from typing import Any

import trio

from jobtrio.actors.cluster import ClusterActor, ClusterConfig, ClusterSeams
from jobtrio.actors.elector import Verdict
from jobtrio.actors.leadership import Leadership
from jobtrio.backends.memory import MemoryStore
from jobtrio.cluster.messages import PROTOCOL_VERSION, CancelJob, Join, MemberUpdate, encode
from jobtrio.cluster.transport import Incoming, PeerTransport
from jobtrio.events import EventBus
from tests.waiting import wait_until


class LoopbackTransport(PeerTransport):
    """Delivers what the test puts in; keeps what the actor sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._in_send, self._in = trio.open_memory_channel[Incoming](math.inf)

    def deliver(self, sender: str, message: dict[str, Any]) -> None:
        self._in_send.send_nowait(Incoming(sender, message))

    def send(self, node_id: str, message: dict[str, Any]) -> None:
        self.sent.append((node_id, message))

    def send_to_address(self, address: str, message: dict[str, Any]) -> None:
        self.sent.append((address, message))

    def set_address(self, node_id: str, address: str) -> None:
        pass

    def forget(self, node_id: str) -> None:
        pass

    async def receive(self) -> Incoming:
        return await self._in.receive()


async def test_cancels_travel_as_typed_messages_both_ways(autojump_clock: object) -> None:
    transport = LoopbackTransport()
    config = ClusterConfig("a", "10.0.0.1:1", (), "gossip", 10.0, 30.0, "http://a", 2)
    actor = ClusterActor(config, transport)
    cancelled: list[str] = []
    verdicts: list[Verdict] = []
    seams = ClusterSeams(
        on_verdict=verdicts.append,
        on_cancel=cancelled.append,
        events=EventBus("a"),
        store=MemoryStore(),
        leadership=Leadership("a", "gossip"),
        clock=trio.current_time,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor.run, seams)
        transport.deliver("b", encode(Join(MemberUpdate("b", "10.0.0.2:1", 0, "alive", {}))))
        await wait_until(lambda: "b" in actor.alive())

        actor.broadcast_cancel("job-1")
        assert ("b", encode(CancelJob("job-1"))) in transport.sent

        transport.deliver("b", {"v": PROTOCOL_VERSION, "kind": "job.cancel", "job_id": 5})
        transport.deliver("b", encode(CancelJob("job-2")))
        await wait_until(lambda: cancelled)
        assert cancelled == ["job-2"] and actor.dropped_messages == 1  # the malformed one

        await wait_until(lambda: verdicts, timeout=60)  # gossip names a leader once settled
        assert verdicts[-1] == actor.current_verdict()
        nursery.cancel_scope.cancel()
