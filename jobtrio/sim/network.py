"""A simulated network behind the ``PeerTransport`` interface.

The cluster actors talk to :class:`SimTransport` exactly as they talk to the
websocket transport: ``send`` by node id (dropped when the address is not
known yet), ``send_to_address`` while joining, ``set_address``/``forget``,
and ``receive``. Underneath, one :class:`SimNetwork` moves every message:

* **Latency** per directed link: a base drawn once per link (a few links are
  ten times slower, as a congested path would be) plus an exponential jitter
  per message; messages on one link stay in order unless reordering is on.
* **Loss, duplication, reordering**: knobs the nemesis turns during the run
  (``faults``); reordering adds a uniform extra delay that lets later
  messages overtake earlier ones.
* **Partitions**: a set of blocked *directed* links, so halves, an isolated
  node, a bridge node that sees both sides, and one-way cuts are all the
  same mechanism. A message is judged when it arrives, so a partition also
  swallows what was in flight when it began.
* **Node death**: a crashed node's inbox is gone; what arrives meanwhile is
  dropped, and a restarted node gets a fresh inbox.
* **Frozen nodes** (``freeze``/``thaw``): a paused process sends nothing and
  what reaches it is dropped, while its timers keep running (its Broker
  requests are held by its connection, see :mod:`.backends`).

Messages cross as JSON text and are decoded on delivery, as on the wire, so
no sender can share an object with a receiver. Each link draws from its own
seeded ``random.Random``, so the draws of one link do not depend on how many
messages other links carried; one pump task delivers from a heap keyed by
(arrival time, send order), which keeps delivery order a function of the seed.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..cluster.transport import Incoming, PeerTransport
from .determinism import rng as derived_rng
from .trace import Trace

PORT = 7946


def address_of(node_id: str) -> str:
    return f"{node_id}.sim:{PORT}"


@dataclass(slots=True)
class NetworkFaults:
    """The network-wide knobs the nemesis turns (all off: a healthy LAN)."""

    loss: float = 0.0
    duplicate: float = 0.0
    #: Upper bound (s) of an extra uniform delay per message; 0 keeps each link FIFO.
    reorder: float = 0.0

    def healthy(self) -> bool:
        return self.loss == 0 and self.duplicate == 0 and self.reorder == 0


@dataclass(slots=True)
class _Link:
    base: float
    rng: random.Random
    last_arrival: float = 0.0


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    partitioned: int = 0
    frozen: int = 0
    to_dead_node: int = 0
    unaddressed: int = 0


class SimTransport(PeerTransport):
    """One node's endpoint, as the ``ClusterActor`` sees it."""

    def __init__(self, network: SimNetwork, node_id: str) -> None:
        self.node_id = node_id
        self._network = network
        self._addresses: dict[str, str] = {}
        self._send, self._inbox = trio.open_memory_channel[Incoming](math.inf)
        self.closed = False

    def send(self, node_id: str, message: dict[str, Any]) -> None:
        address = self._addresses.get(node_id)
        if address is None:
            self._network.stats.unaddressed += 1
            self._network.trace.record("net.unaddressed", self.node_id, node_id)
            return
        self.send_to_address(address, message)

    def send_to_address(self, address: str, message: dict[str, Any]) -> None:
        if not self.closed:
            self._network.send(self.node_id, address, message)

    def set_address(self, node_id: str, address: str) -> None:
        if node_id != self.node_id:
            self._addresses[node_id] = address

    def forget(self, node_id: str) -> None:
        self._addresses.pop(node_id, None)

    async def receive(self) -> Incoming:
        return await self._inbox.receive()

    def _deliver(self, sender: str, message: dict[str, Any]) -> None:
        # like the websocket transport's signed hello: a peer that reaches us is addressable
        self.set_address(sender, address_of(sender))
        self._send.send_nowait(Incoming(sender, message))

    def close(self) -> None:
        self.closed = True
        self._send.close()


class SimNetwork:
    def __init__(self, node_ids: Sequence[str], seed: int, trace: Trace) -> None:
        self.node_ids = sorted(node_ids)
        self.trace = trace
        self.stats = NetworkStats()
        self.faults = NetworkFaults()
        self._seed = seed
        self._by_address = {address_of(n): n for n in self.node_ids}
        self._links: dict[tuple[str, str], _Link] = {}
        self._blocked: frozenset[tuple[str, str]] = frozenset()
        self.partition: str | None = None
        #: Nodes cut off from every peer, both ways (a paused process).
        self._frozen: set[str] = set()
        self._endpoints: dict[str, SimTransport] = {}
        self._heap: list[tuple[float, int, str, str, str]] = []
        self._seq = itertools.count()
        self._kick = trio.Event()

    # -- endpoints ------------------------------------------------------------------
    def attach(self, node_id: str) -> SimTransport:
        """A fresh endpoint for a node that (re)starts: nothing from before reaches it."""
        self.detach(node_id)
        endpoint = SimTransport(self, node_id)
        self._endpoints[node_id] = endpoint
        return endpoint

    def detach(self, node_id: str) -> None:
        endpoint = self._endpoints.pop(node_id, None)
        if endpoint is not None:
            endpoint.close()

    # -- partitions ---------------------------------------------------------------------
    def partition_links(self, name: str, blocked: Iterable[tuple[str, str]]) -> None:
        self._blocked = frozenset(blocked)
        self.partition = name
        self.trace.record("fault.partition", name, _describe_links(self._blocked))

    def heal_partition(self) -> None:
        if self.partition is not None:
            self.trace.record("heal.partition", self.partition)
        self._blocked = frozenset()
        self.partition = None

    def blocked(self, src: str, dst: str) -> bool:
        return (src, dst) in self._blocked

    def freeze(self, node_id: str) -> None:
        self._frozen.add(node_id)
        self.trace.record("fault.freeze", node_id)

    def thaw(self, node_id: str) -> None:
        if node_id in self._frozen:
            self._frozen.discard(node_id)
            self.trace.record("heal.thaw", node_id)

    # -- moving messages ------------------------------------------------------------------
    def _link(self, src: str, dst: str) -> _Link:
        link = self._links.get((src, dst))
        if link is None:
            r = derived_rng(self._seed, "link", src, dst)
            base = r.uniform(0.0005, 0.003)
            if r.random() < 0.1:
                base *= 10  # a congested path
            link = self._links[(src, dst)] = _Link(base, r)
        return link

    def send(self, src: str, address: str, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), sort_keys=True)
        dst = self._by_address.get(address)
        seq = next(self._seq)
        self.stats.sent += 1
        if dst is None:
            self.stats.unaddressed += 1
            self.trace.record("net.nowhere", seq, src, address)
            return
        self.trace.record("send", seq, f"{src}>{dst}", text)
        link = self._link(src, dst)
        r, faults = link.rng, self.faults
        lost = r.random() < faults.loss
        copies = 2 if r.random() < faults.duplicate else 1
        if lost:
            self.stats.lost += 1
            self.trace.record("net.lost", seq)
            return
        if copies == 2:
            self.stats.duplicated += 1
            self.trace.record("net.dup", seq)
        now = trio.current_time()
        for _ in range(copies):
            arrival = now + link.base * (1.0 + r.expovariate(3.0))
            if faults.reorder > 0:
                arrival += r.uniform(0.0, faults.reorder)
            else:
                arrival = max(arrival, link.last_arrival)  # FIFO per link
            link.last_arrival = max(link.last_arrival, arrival)
            if not self._heap or arrival < self._heap[0][0]:
                self._kick.set()
            heapq.heappush(self._heap, (arrival, seq, src, dst, text))

    async def run(self) -> None:
        """The pump: deliver every message at its arrival time, in (time, send order)."""
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, seq, src, dst, text = heapq.heappop(self._heap)
                self._deliver(seq, src, dst, text)
            self._kick = trio.Event()
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_at(deadline):
                await self._kick.wait()

    def _deliver(self, seq: int, src: str, dst: str, text: str) -> None:
        if src in self._frozen or dst in self._frozen:
            self.stats.frozen += 1
            self.trace.record("net.frozen", seq)
            return
        if (src, dst) in self._blocked:
            self.stats.partitioned += 1
            self.trace.record("net.cut", seq)
            return
        endpoint = self._endpoints.get(dst)
        if endpoint is None:
            self.stats.to_dead_node += 1
            self.trace.record("net.dead", seq)
            return
        self.stats.delivered += 1
        self.trace.record("recv", seq)
        endpoint._deliver(src, json.loads(text))


# -- partition shapes: each returns (name, blocked directed links) ------------------------


def _cut(a: Iterable[str], b: Iterable[str], *, both_ways: bool = True) -> set[tuple[str, str]]:
    a, b = list(a), list(b)
    links = {(x, y) for x in a for y in b}
    if both_ways:
        links |= {(y, x) for x in a for y in b}
    return links


def halves(nodes: Sequence[str], r: random.Random) -> tuple[str, set[tuple[str, str]]]:
    """Two sides, as even as the node count allows (a majority and a minority)."""
    shuffled = sorted(nodes)
    r.shuffle(shuffled)
    k = len(shuffled) // 2
    a, b = sorted(shuffled[:k]), sorted(shuffled[k:])
    return f"halves {','.join(a)}|{','.join(b)}", _cut(a, b)


def isolate(nodes: Sequence[str], r: random.Random) -> tuple[str, set[tuple[str, str]]]:
    node = r.choice(sorted(nodes))
    rest = [n for n in sorted(nodes) if n != node]
    return f"isolate {node}", _cut([node], rest)


def bridge(nodes: Sequence[str], r: random.Random) -> tuple[str, set[tuple[str, str]]]:
    """Two sides that cannot see each other, and one node that sees both."""
    shuffled = sorted(nodes)
    r.shuffle(shuffled)
    middle, rest = shuffled[0], shuffled[1:]
    k = max(1, len(rest) // 2)
    a, b = sorted(rest[:k]), sorted(rest[k:])
    return f"bridge {middle} between {','.join(a)}|{','.join(b)}", _cut(a, b)


def one_way(nodes: Sequence[str], r: random.Random) -> tuple[str, set[tuple[str, str]]]:
    """Messages from one side reach the other, but not back."""
    shuffled = sorted(nodes)
    r.shuffle(shuffled)
    k = r.randint(1, len(shuffled) - 1)
    a, b = sorted(shuffled[:k]), sorted(shuffled[k:])
    return f"one-way {','.join(a)}-/->{','.join(b)}", _cut(a, b, both_ways=False)


PARTITIONS = (halves, isolate, bridge, one_way)


def _describe_links(links: frozenset[tuple[str, str]]) -> str:
    return ",".join(f"{a}>{b}" for a, b in sorted(links))
