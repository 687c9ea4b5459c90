"""Registering the code that runs a job type.

A processor is a function of a ``JobContext`` returning a JSON-able result.
Async functions run in the node's trio loop; blocking ones run off it, in a
thread (``blocking=True``, I/O-bound libraries) or in a worker process
(``blocking="process"``, CPU-bound work, via trio-parallel), so a busy job
never delays lease heartbeats or the API. A processor that raises fails the
attempt; one that hangs is cut off by the job's timeout.

    from jobtrio import Registry, JobContext

    registry = Registry()

    @registry.processor("email")
    async def send_email(ctx: JobContext) -> dict:
        ...

``jobtrio serve --app mymodule:registry`` serves it (the built-in processors
stay registered unless the module registers the same type).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from .schedules import Schedule, validate_schedule

log = logging.getLogger("jobtrio.processors")

Mode = Literal["async", "thread", "process"]


#: Takes a progress report (fraction, message) for the node; see ``JobContext.progress``.
ProgressReporter = Callable[[float, str | None], None]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a processor may know about its job: plain data, picklable for processes."""

    job_id: str
    type: str
    payload: dict[str, Any]
    priority: int
    attempt: int
    retry_count: int
    max_retries: int
    node_id: str
    worker_id: str
    #: Where progress reports go (the node's dispatcher); None in a worker process.
    reporter: ProgressReporter | None = field(default=None, repr=False, compare=False)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the attempt has come: ``fraction`` from 0 to 1, a short message.

        The job's record shows the last report and the event stream carries
        it as ``job.progress``. Reporting is cheap and never waits for the
        Broker: the node keeps the latest report per job and writes them in
        one Broker move per ``PROGRESS_INTERVAL`` (so many reports a second
        cost one write). A fraction outside 0..1 raises ``ValueError``; a
        message longer than 200 characters is cut.
        """
        self.report_progress(fraction, message)
        await trio.lowlevel.checkpoint()

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """``progress`` for blocking processors run in a thread (``blocking=True``)."""
        if self.reporter is None:
            raise RuntimeError(
                "progress reports reach the node from async and thread processors only, "
                "not from a worker process (blocking='process')"
            )
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # a worker thread: hand the report to the trio thread
            trio.from_thread.run_sync(self.reporter, fraction, message)
        else:
            self.reporter(fraction, message)


ProcessorFn = Callable[[JobContext], Any] | Callable[[JobContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Processor:
    type: str
    fn: ProcessorFn
    mode: Mode
    #: Seconds an attempt may take when the job sets no timeout (None: unbounded).
    default_timeout: float | None = None


class UnknownJobType(LookupError):
    pass


class Registry:
    """Job type -> processor. One per node; tests build their own."""

    def __init__(self, builtins: bool = True) -> None:
        self._processors: dict[str, Processor] = {}
        self._schedules: dict[str, Schedule] = {}
        if builtins:
            register_builtins(self)

    def register(
        self,
        job_type: str,
        fn: ProcessorFn,
        *,
        blocking: bool | Literal["thread", "process"] = False,
        timeout: float | None = None,
    ) -> None:
        if not job_type or not isinstance(job_type, str):
            raise ValueError("a processor needs a non-empty job type")
        if blocking is True:
            mode: Mode = "thread"
        elif blocking is False:
            mode = "async"
        elif blocking in ("thread", "process"):
            mode = blocking
        else:
            raise ValueError(
                f"blocking must be True, False, 'thread' or 'process', not {blocking!r}"
            )
        if mode == "async" and not _is_async(fn):
            raise ValueError(
                f"processor for {job_type!r} is not async: register it with blocking=True "
                "(thread) or blocking='process'"
            )
        self._processors[job_type] = Processor(job_type, fn, mode, timeout)

    def processor(
        self,
        job_type: str,
        *,
        blocking: bool | Literal["thread", "process"] = False,
        timeout: float | None = None,
        schedule: str | None = None,
    ) -> Callable[[ProcessorFn], ProcessorFn]:
        """Register ``fn`` for ``job_type``; ``schedule`` (a cron expression) also runs it
        periodically with an empty payload."""

        def decorate(fn: ProcessorFn) -> ProcessorFn:
            self.register(job_type, fn, blocking=blocking, timeout=timeout)
            if schedule is not None:
                self.schedule(f"{job_type}:cron", job={"type": job_type}, cron=schedule)
            return fn

        return decorate

    def schedule(
        self,
        name: str,
        *,
        job: dict[str, Any],
        cron: str | None = None,
        every: float | str | None = None,
        misfire_grace: float = 60.0,
    ) -> None:
        """Submit ``job`` on every tick of ``cron`` (or ``every`` seconds), once cluster-wide."""
        spec: dict[str, Any] = {"name": name, "job": job, "misfire_grace": misfire_grace}
        if cron is not None:
            spec["cron"] = cron
        if every is not None:
            spec["every"] = every
        schedule = validate_schedule(spec, 0.0)
        self._schedules[name] = Schedule(
            name=schedule.name,
            job=schedule.job,
            cron=schedule.cron,
            every=schedule.every,
            misfire_grace=schedule.misfire_grace,
            source="code",
        )

    def schedules(self) -> list[Schedule]:
        return list(self._schedules.values())

    def update(self, other: Registry) -> None:
        self._processors.update(other._processors)
        self._schedules.update(other._schedules)

    def get(self, job_type: str) -> Processor:
        try:
            return self._processors[job_type]
        except KeyError:
            raise UnknownJobType(
                f"no processor is registered for job type {job_type!r} on this node"
            ) from None

    def types(self) -> list[str]:
        return sorted(self._processors)


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


async def run_processor(
    processor: Processor, ctx: JobContext, limiter: trio.CapacityLimiter
) -> Any:
    """Run one attempt where its mode says; cancellation abandons blocking work."""
    if processor.mode == "async":
        return await processor.fn(ctx)  # type: ignore[misc]
    if processor.mode == "thread":
        return await trio.to_thread.run_sync(
            processor.fn, ctx, limiter=limiter, abandon_on_cancel=True
        )
    import trio_parallel

    # a cancelled attempt kills its worker process: CPU-bound work really stops
    return await trio_parallel.run_sync(processor.fn, ctx, kill_on_cancel=True, limiter=limiter)


def load_app(spec: str) -> Registry:
    """Import ``module:attribute`` (a Registry, or a function returning one)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app {spec!r} is not module:attribute, e.g. myjobs:registry")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"--app {spec!r}: module {module_name!r} has no {attr!r}") from None
    if callable(obj) and not isinstance(obj, Registry):
        obj = obj()
    if not isinstance(obj, Registry):
        raise ValueError(f"--app {spec!r} is a {type(obj).__name__}, not a jobtrio Registry")
    return obj


# --------------------------------------------------------------------------
# built-ins: for demos, smoke tests and benchmarks


class ProcessorFailure(Exception):
    """Raised by the ``fail`` processor."""


async def _noop(ctx: JobContext) -> None:
    return None


async def _echo(ctx: JobContext) -> dict[str, Any]:
    return ctx.payload


async def _sleep(ctx: JobContext) -> dict[str, float]:
    seconds = ctx.payload.get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError("sleep needs payload.seconds, a non-negative number")
    await trio.sleep(seconds)
    return {"slept": seconds}


async def _fail(ctx: JobContext) -> None:
    message = ctx.payload.get("message", "this job always fails")
    raise ProcessorFailure(str(message))


async def _flaky(ctx: JobContext) -> dict[str, int]:
    """Fails its first ``payload.failures`` attempts (counted by retries), then succeeds:
    a fail-then-succeed job for retry and chaos tests."""
    failures = ctx.payload.get("failures", 1)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError("flaky needs payload.failures, a non-negative integer")
    if ctx.retry_count < failures:
        raise ProcessorFailure(f"flaky: failure {ctx.retry_count + 1} of {failures}")
    return {"failed_first": failures}


async def _email(ctx: JobContext) -> dict[str, Any]:
    recipient = ctx.payload.get("recipient")
    subject = ctx.payload.get("subject", "")
    if not isinstance(recipient, str) or "@" not in recipient:
        raise ValueError("email needs payload.recipient, an email address")
    log.info("email (simulated) to %s: %s", recipient, subject)
    return {"sent_to": recipient, "subject": subject, "simulated": True}


def _spin(ctx: JobContext) -> dict[str, int]:
    """CPU-bound busy loop (payload ``iterations``), for the process mode."""
    n = int(ctx.payload.get("iterations", 1_000_000))
    total = 0
    for i in range(n):
        total += i * i
    return {"iterations": n, "checksum": total % 1_000_007}


def register_builtins(registry: Registry) -> None:
    registry.register("noop", _noop)
    registry.register("echo", _echo)
    registry.register("sleep", _sleep)
    registry.register("fail", _fail)
    registry.register("flaky", _flaky)
    registry.register("email", _email)
    registry.register("spin", _spin, blocking="process")
