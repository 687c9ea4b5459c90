"""Which queues a node serves, and in what order: ``QUEUES`` and ``QUEUE_CONCURRENCY``.

Sans-IO: the settings' text is parsed here, and ``QueuePlan.scope`` turns the
plan, the node's processor types and what the node holds now into the
``ClaimScope`` of one claim. The Broker does the rest (pause, rate limits).

``QUEUES`` follows Sidekiq:

- empty (the default): every queue, merged into one priority order;
- ``render,email``: strict order: a claim fills from ``render`` first and
  takes from ``email`` only what ``render`` cannot give;
- ``render:3,email:1``: weighted: each claim draws the queues' order at random
  with these weights (Sidekiq's weighted fetch), so under a backlog in every
  queue ``render`` leads three claims in four, and no queue starves.

``QUEUE_CONCURRENCY=render=2,email=10`` caps the jobs of a queue this node
holds at once (claimed or running), whatever ``QUEUES`` says; a limit is 1 to
``MAX_CONCURRENCY`` (10,000, WORKER_COUNT's own ceiling).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .jobs import ValidationError
from .submission import check_queue_name

if TYPE_CHECKING:
    from .backends.base import ClaimScope

MAX_WEIGHT = 1000
#: Most jobs of one queue a node may be told to hold (``QUEUE_CONCURRENCY``): WORKER_COUNT's
#: own ceiling. A bigger number was accepted and meant "no limit" while reading as one.
MAX_CONCURRENCY = 10000


def _name(text: str, setting: str) -> str:
    try:
        return check_queue_name(text.strip(), setting)
    except ValidationError as exc:
        raise ValueError(exc.message) from None


def parse_queues(text: str) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    """``QUEUES``: (queues in order, their weights or ``None`` for strict order)."""
    if not text.strip():
        return (), None
    names: list[str] = []
    weights: list[int | None] = []
    for part in text.split(","):
        name, sep, weight = part.partition(":")
        if not name.strip():
            raise ValueError("expected queue names separated by commas, e.g. render,email")
        names.append(_name(name, "a queue name"))
        if sep:
            value = _whole(weight)
            if value is None:
                raise ValueError(f"the weight of {name.strip()} must be a whole number")
            if not 1 <= value <= MAX_WEIGHT:
                raise ValueError(f"the weight of {name.strip()} must be from 1 to {MAX_WEIGHT}")
            weights.append(value)
        else:
            weights.append(None)
    if len(set(names)) != len(names):
        raise ValueError("a queue is named twice")
    if all(w is None for w in weights):
        return tuple(names), None
    if any(w is None for w in weights):
        raise ValueError("give every queue a weight (render:3,email:1) or none (render,email)")
    return tuple(names), tuple(w for w in weights if w is not None)


def _whole(text: str) -> int | None:
    """``text`` as an int, or None if it is not one. Beyond 18 digits it stands for a huge
    number of its sign, so 5,000 nines is "from 1 to 1000", not (as ``int`` has it, past
    its digit limit) "not a whole number"."""
    value = text.strip()
    digits = value[1:] if value[:1] in "+-" else value
    if not digits.isdecimal():
        return None
    if len(digits) > 18:
        return -(10**18) if value.startswith("-") else 10**18
    return int(value)


def parse_concurrency(text: str) -> tuple[tuple[str, int], ...]:
    """``QUEUE_CONCURRENCY``: (queue, most jobs held at once) pairs."""
    if not text.strip():
        return ()
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, most = part.partition("=")
        if not sep:
            raise ValueError("expected queue=limit pairs separated by commas, e.g. render=2")
        queue = _name(name, "a queue name")
        value = _whole(most)
        if value is None:
            raise ValueError(f"the limit of {queue} must be a whole number")
        if not 1 <= value <= MAX_CONCURRENCY:
            raise ValueError(f"the limit of {queue} must be from 1 to {MAX_CONCURRENCY}")
        if queue in out:
            raise ValueError(f"{queue} is named twice")
        out[queue] = value
    return tuple(out.items())


def format_queues(queues: tuple[str, ...], weights: tuple[int, ...] | None) -> str:
    """The ``QUEUES`` text of a plan (what a node advertises to its peers)."""
    if weights is None:
        return ",".join(queues)
    return ",".join(f"{q}:{w}" for q, w in zip(queues, weights, strict=True))


@dataclass(frozen=True, slots=True)
class QueuePlan:
    """A node's queues: served in order (or every queue), weights, per-queue caps."""

    queues: tuple[str, ...] = ()
    weights: tuple[int, ...] | None = None
    concurrency: tuple[tuple[str, int], ...] = ()

    @property
    def text(self) -> str:
        """The plan as ``QUEUES`` text ('' for every queue): what a node advertises."""
        return format_queues(self.queues, self.weights)

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues

    def order(self, rng: random.Random) -> tuple[str, ...] | None:
        """This claim's queue order: ``None`` for every queue, else strict or drawn."""
        if not self.queues:
            return None
        if self.weights is None:
            return self.queues
        left = list(zip(self.queues, self.weights, strict=True))
        out = []
        while left:
            pick = rng.uniform(0, sum(w for _, w in left))
            for i, (queue, weight) in enumerate(left):
                pick -= weight
                if pick < 0 or i == len(left) - 1:
                    out.append(queue)
                    del left[i]
                    break
        return tuple(out)

    def scope(
        self, types: Iterable[str], held: Mapping[str, int], rng: random.Random
    ) -> ClaimScope:
        """The scope of one claim by a node that can run ``types`` and holds ``held``
        jobs per queue."""
        from .backends.base import ClaimScope  # config imports this module before backends

        limits = tuple((q, max(0, most - held.get(q, 0))) for q, most in self.concurrency)
        return ClaimScope(types=frozenset(types), queues=self.order(rng), limits=limits)


#: Longest text a member's meta value may hold (cluster/messages.py's MAX_TEXT_LENGTH).
_MAX_ADVERTISED = 2048


def advertised_types(types: Iterable[str]) -> str:
    """The types a node can run as its peers learn them: one a line ('' when too long
    for a member's meta, which peers take as "runs any type")."""
    text = "\n".join(sorted(types))
    return text if len(text) <= _MAX_ADVERTISED else ""


@dataclass(frozen=True, slots=True)
class Worker:
    """What one live node said it runs: its types (``None``: any) and its queue plan."""

    node_id: str
    types: frozenset[str] | None
    plan: QueuePlan


def worker_from_meta(node_id: str, meta: Mapping[str, object]) -> Worker:
    """A peer's ``Worker`` from its member meta; what cannot be read counts as "any"."""
    types_text = meta.get("types")
    types = (
        frozenset(types_text.split("\n")) if isinstance(types_text, str) and types_text else None
    )
    try:
        queues, weights = parse_queues(str(meta.get("queues") or ""))
    except ValueError:
        queues, weights = (), None
    return Worker(node_id, types, QueuePlan(queues, weights))


def unserved(
    pending: Mapping[str, Mapping[str, int]], workers: Iterable[Worker]
) -> list[dict[str, object]]:
    """The pending (queue, type) pairs no live worker can take, with a reason to show.

    ``pending``: queue -> type -> jobs (``Broker.queues``). A pair is served
    when some worker serves the queue and runs the type.
    """
    workers = list(workers)
    out: list[dict[str, object]] = []
    for queue in sorted(pending):
        for job_type, count in sorted(pending[queue].items()):
            if count <= 0:
                continue
            if any(
                w.plan.serves(queue) and (w.types is None or job_type in w.types) for w in workers
            ):
                continue
            runs = any(w.types is None or job_type in w.types for w in workers)
            reason = f"no worker serves queue {queue}" if runs else f"no worker for type {job_type}"
            out.append({"queue": queue, "type": job_type, "pending": count, "reason": reason})
    return out
