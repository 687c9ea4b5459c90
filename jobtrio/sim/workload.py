"""The jobs a simulated cluster runs, and the clients that submit and cancel them.

Processors cover the shapes that stress the job path differently:

* ``quick``: a few tens of milliseconds; most of the traffic.
* ``slow``: longer than a lease (``JOB_LEASE`` is 2 s in the simulator), so
  only the heartbeat's renewals keep it; a node cut off from the Broker loses
  it, and another node runs it again.
* ``flaky``: fails its first ``fail_first`` attempts (a rule drawn by the
  client from the seed), then succeeds, or ends ``failed`` when retries run out.
* ``hang``: never returns; its timeout ends every attempt.

Nothing here reads a clock or a global random source: durations and rules
travel in the payload, and time is trio's (the MockClock's).

Clients behave like Jepsen's: each submission carries an idempotency key;
one that fails (node down, Broker unreachable, reply lost) is retried with
the same key on another node, because its outcome is unknown. A job counts as
*acknowledged* once a submission returns it; only those must never be lost.
Some running jobs are cancelled by the client.

Some quick jobs depend on jobs the same client had acknowledged shortly
before (``depends_on``): one parent makes chains, several make chords (with
``receive_results`` or not, and some under ``on_dependency_failure: run``).
Those choices come from a stream of their own (``deps``), so the other draws
of a seed stay what they were without them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..backends.base import BackendUnavailable, StateConflict
from ..processors import JobContext, Registry
from .history import ClientJob, History


async def _quick(ctx: JobContext) -> dict[str, Any]:
    await trio.sleep(float(ctx.payload["seconds"]))
    return {"n": ctx.payload["n"]}


async def _slow(ctx: JobContext) -> dict[str, Any]:
    await trio.sleep(float(ctx.payload["seconds"]))
    return {"n": ctx.payload["n"], "slow": True}


class FlakyFailure(Exception):
    pass


async def _flaky(ctx: JobContext) -> dict[str, Any]:
    await trio.sleep(float(ctx.payload["seconds"]))
    if ctx.attempt <= int(ctx.payload["fail_first"]):
        raise FlakyFailure(f"attempt {ctx.attempt} fails by rule")
    return {"n": ctx.payload["n"], "attempt": ctx.attempt}


async def _hang(ctx: JobContext) -> None:
    await trio.sleep_forever()


def sim_registry() -> Registry:
    registry = Registry(builtins=False)
    registry.register("quick", _quick)
    registry.register("slow", _slow)
    registry.register("flaky", _flaky)
    registry.register("hang", _hang)
    return registry


def job_spec(r: random.Random, n: int, now: float) -> dict[str, Any]:
    """One submission, drawn from the client's seeded stream."""
    kind = r.choices(("quick", "slow", "flaky", "hang"), weights=(60, 15, 20, 5))[0]
    spec: dict[str, Any] = {"type": kind, "priority": r.randint(1, 10)}
    if kind == "quick":
        spec["payload"] = {"n": n, "seconds": round(r.uniform(0.01, 0.2), 3)}
    elif kind == "slow":
        spec["payload"] = {"n": n, "seconds": round(r.uniform(2.5, 6.0), 3)}
    elif kind == "flaky":
        spec["payload"] = {
            "n": n,
            "seconds": round(r.uniform(0.01, 0.3), 3),
            "fail_first": r.randint(0, 4),
        }
        spec["max_retries"] = r.randint(1, 3)
    else:
        spec["payload"] = {"n": n}
        spec["timeout"] = round(r.uniform(0.3, 1.2), 3)
        spec["max_retries"] = r.randint(0, 2)
    if r.random() < 0.1:
        spec["scheduled_at"] = round(now + r.uniform(0.5, 5.0), 3)
    return spec


class NodeDown(Exception):
    """The node a client picked is not running (connection refused)."""


@dataclass(slots=True)
class ClientConfig:
    clients: int = 2
    #: Mean seconds between a client's operations.
    think: float = 0.4
    cancel_ratio: float = 0.08
    max_attempts: int = 4
    #: Share of quick jobs that depend on the client's recent jobs.
    dependent_ratio: float = 0.2
    #: How many recent acknowledged jobs a dependent chooses its parents among.
    dependency_window: int = 6


class Client:
    """One simulated API client. ``call`` runs an operation on a node, as an HTTP request would."""

    def __init__(
        self,
        name: str,
        history: History,
        r: random.Random,
        nodes: Callable[[], Sequence[str]],
        call: Callable[..., Any],
        clock: Callable[[], float],
        config: ClientConfig,
        deps: random.Random | None = None,
    ) -> None:
        self.name = name
        #: Draws the dependencies (None: the client submits none).
        self._deps = deps
        self._history = history
        self._r = r
        self._nodes = nodes
        self._call = call
        self._clock = clock
        self._config = config
        self._count = 0
        self._mine: list[ClientJob] = []

    async def run(self) -> None:
        r = self._r
        while True:
            await trio.sleep(r.expovariate(1.0 / self._config.think))
            acked = [j for j in self._mine if j.acked_id and not j.cancel_requested]
            if acked and r.random() < self._config.cancel_ratio:
                await self._cancel(r.choice(acked))
            else:
                await self._submit()

    async def _submit(self) -> None:
        r = self._r
        self._count += 1
        key = f"{self.name}-{self._count}"
        spec = job_spec(r, self._count, self._clock())
        spec["idempotency_key"] = key
        self._add_dependencies(spec)
        job = ClientJob(key, spec["type"])
        self._history.client_jobs[key] = job
        self._mine.append(job)
        trace = self._history.trace
        for attempt in range(1, self._config.max_attempts + 1):
            node = r.choice(list(self._nodes()))
            job.attempts = attempt
            try:
                accepted = await self._call(node, "submit", spec)
            except (NodeDown, BackendUnavailable) as exc:
                trace.record("client.submit.failed", self.name, key, node, type(exc).__name__)
                await trio.sleep(r.uniform(0.05, 0.5))
                continue
            job.acked_id = accepted.id
            trace.record("client.ack", self.name, key, node, accepted.id)
            return
        trace.record("client.gave_up", self.name, key)

    def _add_dependencies(self, spec: dict[str, Any]) -> None:
        """Make some quick jobs depend on 1 to 3 of this client's recent jobs."""
        d = self._deps
        if d is None or spec["type"] != "quick":
            return
        recent = [j.acked_id for j in self._mine if j.acked_id][-self._config.dependency_window :]
        if not recent or d.random() >= self._config.dependent_ratio:
            return
        spec["depends_on"] = d.sample(recent, min(len(recent), d.choice((1, 1, 2, 3))))
        if d.random() < 0.5:
            spec["receive_results"] = True
        if d.random() < 0.25:
            spec["on_dependency_failure"] = "run"

    async def _cancel(self, job: ClientJob) -> None:
        node = self._r.choice(list(self._nodes()))
        job.cancel_requested = True
        trace = self._history.trace
        try:
            cancelled = await self._call(node, "cancel", job.acked_id)
            trace.record("client.cancel", self.name, job.acked_id, node, cancelled.status)
        except StateConflict as exc:
            trace.record("client.cancel", self.name, job.acked_id, node, "conflict", exc.job.status)
        except (NodeDown, BackendUnavailable) as exc:
            trace.record("client.cancel.failed", self.name, job.acked_id, type(exc).__name__)
