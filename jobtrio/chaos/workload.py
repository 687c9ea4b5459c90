"""The clients: threads submitting mixed jobs to random nodes, and cancelling some.

Every submission carries an idempotency key, and one that got no answer
(the node died, Redis was down) is retried with the same key on another
node, so a job is created at most once per submission. A submission that
never got a 201 is *indeterminate*: it may exist or not, both are fine.

What was acknowledged, and what each job was (``Kind``), goes into the
``History`` the checker reads.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client import Client, JobtrioError, job_submission

#: How a job of each kind may end: what the checker accepts as its outcome.
KINDS: dict[str, frozenset[str]] = {
    "noop": frozenset({"completed"}),
    "sleep": frozenset({"completed"}),
    "flaky": frozenset({"completed"}),  # fails 1-2 times, has 3 retries
    "delayed": frozenset({"completed"}),  # scheduled 1-3 s ahead
    "fail": frozenset({"failed"}),  # always raises, no retries
    "timeout": frozenset({"failed"}),  # sleeps past its timeout, no retries
    "cancel": frozenset({"cancelled", "completed"}),  # cancelled while pending or running
}
#: Relative frequency of each kind.
WEIGHTS = {
    "noop": 25,
    "sleep": 20,
    "flaky": 15,
    "delayed": 5,
    "fail": 10,
    "timeout": 10,
    "cancel": 15,
}
SCHEDULE_TYPE = "echo"  # only the run's schedule submits echo jobs


def submission(kind: str, run_id: str, rng: random.Random) -> dict[str, Any]:
    """The job a client submits for ``kind``; its payload names the run and the kind."""
    mark = {"chaos": run_id, "kind": kind}
    if kind == "noop":
        return job_submission("noop", mark)
    if kind == "sleep":
        return job_submission("sleep", {**mark, "seconds": round(rng.uniform(0.05, 0.5), 3)})
    if kind == "flaky":
        return job_submission("flaky", {**mark, "failures": rng.randint(1, 2)}, max_retries=3)
    if kind == "delayed":
        return job_submission("noop", mark, delay=rng.uniform(1.0, 3.0))
    if kind == "fail":
        return job_submission("fail", mark, max_retries=0)
    if kind == "timeout":
        return job_submission("sleep", {**mark, "seconds": 3}, timeout=0.3, max_retries=0)
    if kind == "cancel":
        return job_submission("sleep", {**mark, "seconds": 2}, max_retries=3)
    raise ValueError(f"unknown job kind {kind!r}")


@dataclass(slots=True)
class Submitted:
    job_id: str
    kind: str
    cancel_requested: bool = False
    cancel_acknowledged: bool = False


@dataclass(slots=True)
class History:
    """What the clients saw, shared by their threads."""

    run_id: str
    acknowledged: dict[str, Submitted] = field(default_factory=dict)
    #: Idempotency keys of submissions that never got an answer, with their kind.
    indeterminate: dict[str, str] = field(default_factory=dict)
    cancels_failed: int = 0
    #: Answers a correct cluster never gives (a 4xx to a valid submission...).
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, job_id: str, kind: str) -> None:
        with self.lock:
            self.acknowledged[job_id] = Submitted(job_id, kind)


@dataclass(slots=True)
class Workload:
    urls: Sequence[str]
    history: History
    rng: random.Random
    #: Submissions a second, all clients together.
    rate: float = 10.0
    clients: int = 3
    log: Callable[[str], None] = lambda line: None

    def run(self, stop: threading.Event) -> None:
        """Run the client threads until ``stop`` is set."""
        seeds = [self.rng.getrandbits(64) for _ in range(self.clients)]
        threads = [
            threading.Thread(target=self._client, args=(i, random.Random(seed), stop), daemon=True)
            for i, seed in enumerate(seeds)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _client(self, index: int, rng: random.Random, stop: threading.Event) -> None:
        try:
            self._submit_until(index, rng, stop)
        except Exception as exc:  # a bug of the workload: the checker reports it
            with self.history.lock:
                self.history.errors.append(f"client {index} crashed: {exc!r}")

    def _submit_until(self, index: int, rng: random.Random, stop: threading.Event) -> None:
        clients = [Client(url, timeout=5.0) for url in self.urls]
        period = self.clients / self.rate
        to_cancel: list[str] = []
        try:
            n = 0
            while not stop.wait(rng.uniform(0.5, 1.5) * period):
                if to_cancel and rng.random() < 0.7:
                    self._cancel(to_cancel.pop(0), clients, rng)
                    continue
                kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
                key = f"{self.history.run_id}:{index}:{n}"
                n += 1
                body = {**submission(kind, self.history.run_id, rng), "idempotency_key": key}
                job_id = self._submit(body, clients, rng, stop)
                if job_id is None:
                    with self.history.lock:
                        self.history.indeterminate[key] = kind
                    continue
                self.history.ack(job_id, kind)
                if kind == "cancel":
                    to_cancel.append(job_id)
        finally:
            for c in clients:
                c.close()

    def _submit(
        self, body: dict[str, Any], clients: list[Client], rng: random.Random, stop: threading.Event
    ) -> str | None:
        """The job id once a node acknowledges it (trying other nodes meanwhile), else None."""
        for _ in range(10):
            client = rng.choice(clients)
            try:
                return client.submit_many([body])[0].id
            except JobtrioError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    with self.history.lock:
                        self.history.errors.append(f"submit {body}: {exc.status} {exc}")
                    return None  # a valid submission refused: the checker reports it
            if stop.wait(0.2):
                return None
        return None

    def _cancel(self, job_id: str, clients: list[Client], rng: random.Random) -> None:
        with self.history.lock:
            self.history.acknowledged[job_id].cancel_requested = True
        for _ in range(5):
            try:
                rng.choice(clients).cancel(job_id)
            except JobtrioError as exc:
                if exc.status == 409:  # already finished: nothing to cancel
                    return
                time.sleep(0.1)
                continue
            with self.history.lock:
                self.history.acknowledged[job_id].cancel_acknowledged = True
            return
        with self.history.lock:
            self.history.cancels_failed += 1
