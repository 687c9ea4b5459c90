"""A tiny deterministic network for driving sans-IO protocol cores in tests.

It plays the actor's part for a set of machines (anything with ``tick``,
``step`` and ``next_deadline``): it delivers ``Send``/``SendToAddress`` outputs
after a latency, records every other output as an event, and advances a
virtual clock from event to event (next delivery or next machine deadline),
so a run never sleeps and is a pure function of its inputs and seeds.

Every message goes through ``encode`` -> JSON -> ``decode`` on the way, so the
wire format is exercised by every protocol test. Faults: directed link blocks
(partitions), crashed nodes, random loss, a custom drop predicate, and a
``hold`` mode in which messages queue until the test releases them in the
order it wants (for scripting races such as split votes).

After every tick the harness checks that the machine's ``next_deadline``
moved past ``now``: a machine that asks to be woken for work it then does not
do would spin a real actor.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jobtrio.cluster.messages import (
    BULLY_MESSAGES,
    RAFT_MESSAGES,
    LeaderChanged,
    MemberDown,
    MemberUp,
    MemberUpdated,
    Message,
    Output,
    Send,
    SendToAddress,
    decode,
    encode,
)


@dataclass(frozen=True, slots=True)
class Envelope:
    src: str
    dst: str
    message: Message
    sent_at: float


class ClusterNode:
    """SWIM plus an election, wired the way the elector actor wires them:
    election messages go to the election, the rest to SWIM, and every
    membership output is followed by ``membership_changed`` with SWIM's view."""

    def __init__(self, swim: Any, election: Any) -> None:
        self.swim = swim
        self.election = election

    def tick(self, now: float) -> list[Output]:
        return self._feed(self.swim.tick(now), now) + self.election.tick(now)

    def step(self, sender: str, message: Message, now: float) -> list[Output]:
        if isinstance(message, RAFT_MESSAGES + BULLY_MESSAGES):
            return self.election.step(sender, message, now)
        return self._feed(self.swim.step(sender, message, now), now)

    def join(self, seeds: Iterable[str], now: float) -> list[Output]:
        return self._feed(self.swim.join(seeds, now), now)

    def leave(self, now: float) -> list[Output]:
        return self._feed(self.swim.leave(now), now)

    def next_deadline(self) -> float | None:
        candidates = (self.swim.next_deadline(), self.election.next_deadline())
        times = [t for t in candidates if t is not None]
        return min(times) if times else None

    def _feed(self, outputs: list[Output], now: float) -> list[Output]:
        if any(isinstance(o, MemberUp | MemberDown | MemberUpdated) for o in outputs):
            outputs = outputs + self.election.membership_changed(
                self.swim.alive_ids(), now, self.swim.left_ids()
            )
        return outputs


class Network:
    def __init__(
        self,
        *,
        latency: float = 0.005,
        jitter: float = 0.0,
        loss: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.now = 0.0
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.rng = random.Random(seed)
        self.nodes: dict[str, Any] = {}
        self.addresses: dict[str, str] = {}  # address -> node id
        self.down: set[str] = set()
        self.blocked: set[tuple[str, str]] = set()
        self.drop: Callable[[Envelope], bool] | None = None
        self.hold = False
        self.held: list[Envelope] = []
        self.events: list[tuple[float, str, Output]] = []
        self.trace: list[tuple[float, str, str, str, dict[str, Any]]] = []
        self.delivered: list[Envelope] = []
        self._queue: list[tuple[float, int, Envelope]] = []
        self._counter = itertools.count()

    # ------------------------------------------------------------ setup

    def add(self, node_id: str, machine: Any, address: str | None = None) -> Any:
        self.nodes[node_id] = machine
        self.addresses[address or f"addr:{node_id}"] = node_id
        return machine

    def address(self, node_id: str) -> str:
        return next(a for a, n in self.addresses.items() if n == node_id)

    def start(self) -> None:
        """First tick of every node, as an actor does on start."""
        for node_id in list(self.nodes):
            self.tick(node_id)

    # ------------------------------------------------------------ driving

    def call(self, node_id: str, fn: Callable[[Any, float], list[Output]]) -> list[Output]:
        """Run ``fn(machine, now)`` (e.g. a ``join`` or ``leave``) and route its outputs."""
        outputs = fn(self.nodes[node_id], self.now)
        self.route(node_id, outputs)
        return outputs

    def tick(self, node_id: str) -> list[Output]:
        machine = self.nodes[node_id]
        outputs = machine.tick(self.now)
        self.route(node_id, outputs)
        deadline = machine.next_deadline()
        assert deadline is None or deadline > self.now, (
            f"{node_id}: next_deadline {deadline} did not move past now {self.now}"
        )
        return outputs

    def route(self, src: str, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._send(src, out.to, out.message)
            elif isinstance(out, SendToAddress):
                dst = self.addresses.get(out.address)
                if dst is not None:
                    self._send(src, dst, out.message)
                self.trace.append((self.now, src, "to-address", out.address, encode(out.message)))
            else:
                self.events.append((self.now, src, out))
                self.trace.append((self.now, src, "event", type(out).__name__, _plain(out)))

    def _send(self, src: str, dst: str, message: Message) -> None:
        wire = json.loads(json.dumps(encode(message)))
        self.trace.append((self.now, src, "send", dst, wire))
        if src in self.down:
            return  # a crashed node sends nothing (what it sent before still arrives)
        env = Envelope(src, dst, decode(wire), self.now)
        if self.hold:
            self.held.append(env)
            return
        self._schedule(env)

    def _schedule(self, env: Envelope, delay: float | None = None) -> None:
        if delay is None:
            delay = self.latency + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
        heapq.heappush(self._queue, (self.now + delay, next(self._counter), env))

    def deliver(self, env: Envelope) -> list[Output]:
        """Hand one envelope to its destination now (unless a fault eats it)."""
        if self._dropped(env):
            return []
        self.delivered.append(env)
        outputs = self.nodes[env.dst].step(env.src, env.message, self.now)
        self.route(env.dst, outputs)
        return outputs

    def release(self, predicate: Callable[[Envelope], bool] = lambda e: True) -> int:
        """Deliver held envelopes matching ``predicate`` now, in order; returns how many."""
        chosen = [e for e in self.held if predicate(e)]
        self.held = [e for e in self.held if not predicate(e)]
        for env in chosen:
            self.deliver(env)
        return len(chosen)

    def flush_held(self) -> None:
        """Stop holding: schedule every held envelope for normal delivery."""
        self.hold = False
        held, self.held = self.held, []
        for env in held:
            self._schedule(env)

    def run_until(self, t_end: float, *, max_steps: int = 1_000_000) -> None:
        for _ in range(max_steps):
            t_msg = self._queue[0][0] if self._queue else math.inf
            t_tick, who = math.inf, None
            for node_id, machine in self.nodes.items():
                if node_id in self.down:
                    continue
                d = machine.next_deadline()
                if d is not None and d < t_tick:
                    t_tick, who = d, node_id
            t = min(t_msg, t_tick)
            if t > t_end:
                break
            self.now = max(self.now, t)
            if t_msg <= t_tick:
                _, _, env = heapq.heappop(self._queue)
                self.deliver(env)
            else:
                assert who is not None
                self.tick(who)
        else:
            raise AssertionError("simulation did not quiesce: too many steps")
        self.now = max(self.now, t_end)

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until_true(
        self, condition: Callable[[], bool], limit: float, step: float = 0.05
    ) -> float:
        """Run until ``condition()`` holds (checked every ``step``); the time it took."""
        start = self.now
        while not condition():
            if self.now - start > limit:
                raise AssertionError(f"condition not met within {limit}s")
            self.run_for(step)
        return self.now - start

    # ------------------------------------------------------------ faults

    def _dropped(self, env: Envelope) -> bool:
        if env.dst in self.down:
            return True
        if (env.src, env.dst) in self.blocked:
            return True
        if self.drop is not None and self.drop(env):
            return True
        return bool(self.loss and self.rng.random() < self.loss)

    def block(self, a: str, b: str, *, both: bool = True) -> None:
        self.blocked.add((a, b))
        if both:
            self.blocked.add((b, a))

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups (nodes in no group keep theirs)."""
        sets = [set(g) for g in groups]
        for i, g in enumerate(sets):
            for h in sets[i + 1 :]:
                for a in g:
                    for b in h:
                        self.block(a, b)

    def isolate(self, node_id: str) -> None:
        self.partition([node_id], [n for n in self.nodes if n != node_id])

    def heal(self) -> None:
        self.blocked.clear()

    def crash(self, node_id: str) -> None:
        self.down.add(node_id)

    def restart(self, node_id: str, machine: Any) -> None:
        """Bring a node back as a fresh machine (state lost, as after a crash)."""
        self.down.discard(node_id)
        self.nodes[node_id] = machine
        self.tick(node_id)

    # ------------------------------------------------------------ observations

    def up(self) -> list[str]:
        return [n for n in self.nodes if n not in self.down]

    def leaders(self, nodes: Iterable[str] | None = None) -> dict[str, str | None]:
        """Which leader each (live) node believes in."""
        return {n: _election(self.nodes[n]).leader for n in (nodes or self.up())}

    def agreed_leader(self, nodes: Iterable[str] | None = None) -> str | None:
        """The leader all given nodes agree on and which itself claims it, else None."""
        seen = set(self.leaders(nodes).values())
        if len(seen) != 1:
            return None
        (leader,) = seen
        if leader is None or leader in self.down:
            return None
        return leader if _election(self.nodes[leader]).is_leader else None

    def leader_changes(self, node_id: str | None = None) -> list[tuple[float, str, LeaderChanged]]:
        return [
            (t, n, o)
            for t, n, o in self.events
            if isinstance(o, LeaderChanged) and (node_id is None or n == node_id)
        ]


def _election(machine: Any) -> Any:
    return machine.election if isinstance(machine, ClusterNode) else machine


def _plain(out: Output) -> dict[str, Any]:
    return {k: getattr(out, k) for k in out.__slots__}  # type: ignore[union-attr]
