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

The decorator returns a ``ProcessorHandle``: still callable as the function,
and a producer submits through it (``send_email.submit(client, {...})``) the
way Celery's ``.delay`` or Dramatiq's ``.send`` do, with the payload checked
against its declared type (``payload=`` a dataclass or TypedDict, see
``payloads.py``) before it leaves.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

import trio

from .payloads import check_payload_type, to_payload
from .schedules import Schedule, validate_schedule

if TYPE_CHECKING:
    import datetime as dt

    from .client import AsyncClient, Client, Time
    from .jobs import Job

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
    #: The payload as the processor's declared type (``payload=``: a dataclass instance,
    #: or the checked dict of a TypedDict); None when it declared none.
    data: Any = None
    #: The results of the jobs this one depends on, in ``depends_on`` order, when it asked
    #: for them (``receive_results``; a chain's step, a chord's callback); else None.
    results: list[Any] | None = None
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
    #: The declared payload type (a dataclass or TypedDict), checked before each attempt.
    payload_type: Any = None


class ProcessorHandle:
    """What ``@registry.processor(...)`` returns: the function, and a way to submit to it.

    Calling the handle calls the function. ``submit(client, payload, ...)``
    sends a job of this type through a ``Client`` (returns the ``Job``) or an
    ``AsyncClient`` (returns an awaitable of it); ``job(payload, ...)`` is the
    submission as a dict, for ``submit_many`` and for workflows (a chain or a
    group of handles' jobs). With a declared payload type the payload may be
    an instance of it or a dict, and is checked here before anything is sent
    (``payloads.PayloadError`` names the field).
    """

    def __init__(self, job_type: str, fn: ProcessorFn, payload_type: Any = None) -> None:
        self.type = job_type
        self.fn = fn
        self.payload_type = payload_type
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", job_type)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, ctx: JobContext) -> Any:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"<processor {self.type!r}: {self.__name__}>"

    def payload(self, value: Any = None) -> dict[str, Any] | None:
        """The payload as sent: checked against the declared type, if any."""
        if self.payload_type is None:
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"a payload is a dict, not a {type(value).__name__}")
            return value
        return to_payload(self.payload_type, {} if value is None else value)

    def job(
        self,
        payload: Any = None,
        *,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout: float | dt.timedelta | None = None,
        delay: float | dt.timedelta | None = None,
        scheduled_at: Time | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """The submission of one job of this type (``client.job_submission``'s dict)."""
        from .client import job_submission

        return job_submission(
            self.type,
            self.payload(payload),
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            delay=delay,
            scheduled_at=scheduled_at,
            idempotency_key=idempotency_key,
        )

    @overload
    def submit(
        self, client: AsyncClient, payload: Any = None, **options: Any
    ) -> Awaitable[Job]: ...
    @overload
    def submit(self, client: Client, payload: Any = None, **options: Any) -> Job: ...
    def submit(self, client: Any, payload: Any = None, **options: Any) -> Any:
        """Submit one job of this type; ``options`` are ``Client.submit``'s (priority...)."""
        return client.submit(self.type, self.payload(payload), **options)


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
        payload: Any = None,
    ) -> None:
        if payload is not None:
            check_payload_type(payload)
        if isinstance(fn, ProcessorHandle):
            fn = fn.fn  # a handle registered again, e.g. under a second type
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
        self._processors[job_type] = Processor(job_type, fn, mode, timeout, payload)

    def processor(
        self,
        job_type: str,
        *,
        blocking: bool | Literal["thread", "process"] = False,
        timeout: float | None = None,
        schedule: str | None = None,
        payload: Any = None,
    ) -> Callable[[ProcessorFn], ProcessorHandle]:
        """Register ``fn`` for ``job_type``; ``schedule`` (a cron expression) also runs it
        periodically with an empty payload; ``payload`` (a dataclass or TypedDict) is the
        payload's type, checked by producers and workers (``ctx.data`` holds it typed).
        Returns a ``ProcessorHandle``: the function, which producers submit through."""
        if payload is not None:
            check_payload_type(payload)  # at the decorator line, not at the first job

        def decorate(fn: ProcessorFn) -> ProcessorHandle:
            if isinstance(fn, ProcessorHandle):
                fn = fn.fn
            self.register(job_type, fn, blocking=blocking, timeout=timeout, payload=payload)
            if schedule is not None:
                self.schedule(f"{job_type}:cron", job={"type": job_type}, cron=schedule)
            return ProcessorHandle(job_type, fn, payload)

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
