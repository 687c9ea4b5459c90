"""The blocking client, for scripts and the CLI, where each call waits for its answer.

Each method takes its request from ``calls`` and hands the answer to
``answers``, as ``AsyncClient``'s do, so the two send and read alike; they
differ in how they wait (this one blocks its thread) and in ``events``, which
async code gets as a context manager.
"""

from __future__ import annotations

import datetime as dt
import queue
import ssl
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

import httpx
from httpx_ws import HTTPXWSException, WebSocketUpgradeError, connect_ws

from ..backoff import Backoff
from ..jobs import Job
from ..jsontext import request_body
from .answers import (
    JobPage,
    Workflow,
    job_of,
    read_answer,
    read_jobs,
    read_page,
    workflow_of,
)
from .calls import (
    JSON_BODY,
    Call,
    Calls,
    Time,
    job_submission,
    list_params,
    rate_limit_body,
    schedule_submission,
)
from .endpoint import DEFAULT_TIMEOUT, request_headers, tls_verify, url_and_token
from .errors import Unavailable, WaitTimeout, connection_failed
from .event_follow import EVENTS_PATH, MAX_MESSAGE_BYTES, UPGRADE_HEADERS, EventFollow
from .waiting import WaitMany, deadline_after, wait_timeout


class Client:
    """A blocking client; use it as a context manager, or call ``close``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self.url, token = url_and_token(url, token)
        self._http = httpx.Client(
            base_url=self.url,
            headers=request_headers(token, headers),
            timeout=timeout,
            transport=transport,
            verify=tls_verify(verify),
        )
        #: Event streams ``events`` handed out and not yet closed (see ``close``).
        self._streams: weakref.WeakSet[Generator[dict[str, Any], None, None]] = weakref.WeakSet()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the event streams still open, then the connections.

        An event stream left open (a caller that stopped iterating ``events``
        without closing it, as ``jobtrio jobs watch`` did once its job had ended)
        keeps httpx-ws's reader thread blocked on the socket, and the interpreter
        waits for that thread at exit: the process never ended. Closing the
        stream first ends its websocket session and the thread with it."""
        for stream in list(self._streams):
            stream.close()
        self._http.close()

    def _request(self, call: Call) -> httpx.Response:
        body = None if call.json is None else request_body(call.json)
        try:
            if body is None:
                response = self._http.request(
                    call.method, call.path, params=call.params or None, json=call.json
                )
            else:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params or None,
                    content=body,
                    headers=JSON_BODY,
                )
        except httpx.TransportError as exc:
            raise connection_failed(self.url, exc) from None
        return response

    def _send(self, call: Call) -> Any:
        return read_answer(self._request(call), call)

    # -- jobs ------------------------------------------------------------------------
    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout: float | dt.timedelta | None = None,
        delay: float | dt.timedelta | None = None,
        scheduled_at: Time | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        depends_on: Iterable[str | Job] | None = None,
        on_dependency_failure: str | None = None,
        receive_results: bool | None = None,
    ) -> Job:
        body = job_submission(
            type,
            payload,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            delay=delay,
            scheduled_at=scheduled_at,
            idempotency_key=idempotency_key,
            queue=queue,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
            receive_results=receive_results,
        )
        return job_of(self._send(Calls.submit(body)))

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Up to 10,000 jobs (dicts, e.g. from ``job_submission``), all accepted or none."""
        call = Calls.submit_many(jobs)
        return read_jobs(self._request(call), call)

    def get(self, job_id: str) -> Job:
        return job_of(self._send(Calls.get(job_id)))

    def cancel(self, job_id: str) -> Job:
        return job_of(self._send(Calls.cancel(job_id)))

    def purge(self, job_id: str) -> None:
        """Cancel if live, then delete the job and its record."""
        self._send(Calls.cancel(job_id, purge=True))

    def retry(self, job_id: str) -> Job:
        return job_of(self._send(Calls.retry(job_id)))

    def submit_workflow(
        self, spec: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Workflow:
        """A chain, group or chord (``jobtrio.workflows.chain`` / ``group`` / ``chord``).

        With ``idempotency_key``, submitting again (a retry after a lost answer) returns
        the same workflow and files no second set of jobs."""
        return workflow_of(self._send(Calls.submit_workflow(spec, idempotency_key)))

    def get_workflow(self, workflow_id: str) -> Workflow:
        return workflow_of(self._send(Calls.get_workflow(workflow_id)))

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel every member that has not ended."""
        return workflow_of(self._send(Calls.cancel_workflow(workflow_id)))

    def wait_workflow(
        self, workflow_id: str, timeout: float | None = None, *, poll_interval: float = 0.05
    ) -> Workflow:
        """Poll until every member ended; ``WaitTimeout`` after ``timeout`` seconds."""
        backoff, deadline = Backoff(poll_interval, 1.0, 1.5), deadline_after(timeout)
        while True:
            last = self.get_workflow(workflow_id)
            if last.terminal:
                return last
            delay = backoff.next_within(deadline, time.monotonic())
            if delay is None:
                raise WaitTimeout(f"workflow {workflow_id} is still running after {timeout}s")
            time.sleep(delay)

    def list_page(
        self,
        *,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: Time | None = None,
        created_before: Time | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        params = list_params(status, type, created_after, created_before, limit, cursor, queue)
        call = Calls.list_page(params)
        return read_page(self._request(call), call)

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: Time | None = None,
        created_before: Time | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """Jobs newest first, fetching pages only as the iteration reaches them."""
        cursor: str | None = None
        yielded = 0
        while True:
            page = self.list_page(
                status=status,
                type=type,
                queue=queue,
                created_after=created_after,
                created_before=created_before,
                limit=page_size if limit is None else max(1, min(page_size, limit - yielded)),
                cursor=cursor,
            )
            for job in page.jobs:
                yield job
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        poll_interval: float = 0.05,
        max_interval: float = 1.0,
    ) -> Job:
        """Poll until the job is completed, failed or cancelled; ``WaitTimeout`` names it."""
        backoff, deadline = Backoff(poll_interval, max_interval, 1.5), deadline_after(timeout)
        last: Job | None = None
        while True:
            try:
                last = self.get(job_id)
                if last.terminal:
                    return last
            except Unavailable:
                pass
            delay = backoff.next_within(deadline, time.monotonic())
            if delay is None:
                raise wait_timeout(job_id, timeout, last)
            time.sleep(delay)

    def wait_many(
        self,
        jobs: Iterable[Job | str],
        timeout: float | None = None,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        poll_interval: float = 0.05,
        max_interval: float = 1.0,
    ) -> list[Job]:
        """Wait for every job; returns them finished, in the order given."""
        state = WaitMany(jobs)
        backoff, deadline = Backoff(poll_interval, max_interval, 1.5), deadline_after(timeout)
        while True:
            if on_progress is not None:
                on_progress(state.total - len(state.open), state.total)
            if not state.open:
                return state.result()
            try:
                if state.use_list:
                    cursor = None
                    while True:
                        page = self.list_page(**state.list_kwargs(cursor))
                        for job in page.jobs:
                            state.seen(job)
                        if (cursor := page.next_cursor) is None:
                            break
                else:
                    for job_id in state.open:
                        state.seen(self.get(job_id))
            except Unavailable:
                pass
            state.settle()
            if not state.open:
                continue
            delay = backoff.next_within(deadline, time.monotonic())
            if delay is None:
                raise state.timeout(timeout)
            time.sleep(delay)

    # -- periodic jobs -------------------------------------------------------------------
    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule (from code and from the API), by name, each with ``next_tick``."""
        return self._send(Calls.schedules())["schedules"]  # type: ignore[no-any-return]

    def get_schedule(self, name: str) -> dict[str, Any]:
        return self._send(Calls.schedule("GET", name))  # type: ignore[no-any-return]

    def add_schedule(
        self,
        name: str,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: str | float | dt.timedelta | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout: float | dt.timedelta | None = None,
        enabled: bool = True,
        misfire_grace: float | dt.timedelta | None = None,
    ) -> dict[str, Any]:
        """Create the schedule, or replace the one with the same name (idempotent)."""
        body = schedule_submission(
            name,
            type,
            payload,
            cron=cron,
            every=every,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            enabled=enabled,
            misfire_grace=misfire_grace,
        )
        return self._send(Calls.add_schedule(body))  # type: ignore[no-any-return]

    def queues(self) -> dict[str, Any]:
        """Every queue (``queues``) and the pending work no live node can take (``unserved``)."""
        return self._send(Calls.queue("GET"))  # type: ignore[no-any-return]

    def queue(self, name: str) -> dict[str, Any]:
        """One queue: pending (by type), paused, rate limit, the nodes that serve it."""
        return self._send(Calls.queue("GET", name))  # type: ignore[no-any-return]

    def pause_queue(self, name: str) -> dict[str, Any]:
        """Stop every node claiming from ``name`` (admin); running jobs finish."""
        return self._send(Calls.queue("POST", name, "/pause"))  # type: ignore[no-any-return]

    def resume_queue(self, name: str) -> dict[str, Any]:
        return self._send(Calls.queue("POST", name, "/resume"))  # type: ignore[no-any-return]

    def set_rate_limit(
        self, name: str, jobs: int, per: float | dt.timedelta | str
    ) -> dict[str, Any]:
        """At most ``jobs`` claims from ``name`` per ``per`` (seconds, timedelta or "10s")."""
        body = rate_limit_body(jobs, per)
        return self._send(  # type: ignore[no-any-return]
            Calls.queue("PUT", name, "/rate_limit", body)
        )

    def clear_rate_limit(self, name: str) -> dict[str, Any]:
        return self._send(Calls.queue("DELETE", name, "/rate_limit"))  # type: ignore[no-any-return]

    def delete_schedule(self, name: str) -> None:
        """``NotFound`` if there is none; ``Conflict`` if it is defined in code."""
        self._send(Calls.schedule("DELETE", name))

    def elections(self, limit: int = 50) -> list[dict[str, Any]]:
        """The cluster's leadership history (from the Store), newest first; limit 1..1000."""
        return self._send(Calls.elections(limit))["elections"]  # type: ignore[no-any-return]

    # -- views -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return self._send(Calls.view("/api/v1/stats"))  # type: ignore[no-any-return]

    def workers(self) -> list[dict[str, Any]]:
        return self._send(Calls.view("/api/v1/workers"))["workers"]  # type: ignore[no-any-return]

    def nodes(self) -> list[dict[str, Any]]:
        return self._send(Calls.view("/api/v1/nodes"))["nodes"]  # type: ignore[no-any-return]

    def leader(self) -> dict[str, Any]:
        return self._send(Calls.view("/api/v1/leader"))  # type: ignore[no-any-return]

    def election(self) -> dict[str, Any]:
        return self._send(Calls.view("/api/v1/election"))  # type: ignore[no-any-return]

    def cluster(self) -> dict[str, Any]:
        return self._send(Calls.view("/api/v1/cluster"))  # type: ignore[no-any-return]

    def events(
        self,
        *,
        kind: str | Iterable[str] | None = None,
        type: str | Iterable[str] | None = None,
        job_id: str | Iterable[str] | None = None,
        node: str | Iterable[str] | None = None,
        since: str | None = None,
        reconnect: bool = True,
        timeout: float | None = None,
        control: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Follow the live event stream: one dict per event (``id``, ``kind``, ``at``, ``node``...).

        Filters take one value or several (``kind`` also a family: ``"job"``).
        ``since`` resumes after an event id. When the connection is lost, the
        node drops this reader for being slow, or the node stops, it
        reconnects by itself from the last id seen (``reconnect=False``
        raises ``ConnectionFailed`` instead). A ``{"kind": "stream.gap"}``
        message says that events after ``since`` are no longer kept.
        ``timeout`` ends the iteration after that many seconds in all;
        ``control=True`` also yields the node's ``stream.ready`` message at
        each (re)connection, which says the subscription is live. Close the
        iterator (``.close()``) when done with it; ``close`` of the client closes
        those still open.
        """
        stream = self._follow(
            lambda: EventFollow(kind, type, job_id, node, since, reconnect), timeout, control
        )
        self._streams.add(stream)
        return stream

    def _follow(
        self, make: Callable[[], EventFollow], timeout: float | None, control: bool
    ) -> Generator[dict[str, Any], None, None]:
        follow = make()  # at the first next(), as when events() was the generator
        deadline = deadline_after(timeout)
        while True:
            try:
                with connect_ws(
                    EVENTS_PATH,
                    self._http,
                    params=follow.params(),
                    max_message_size_bytes=MAX_MESSAGE_BYTES,
                ) as ws:
                    while True:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            return
                        try:
                            text = ws.receive_text(timeout=left)
                        except (queue.Empty, TimeoutError):
                            # the timeout ran out: httpx-ws before 0.10 raises
                            # queue.Empty, 0.10 TimeoutError
                            return
                        events = follow.message(text)
                        if not events and control and follow.ready is not None:
                            yield follow.ready
                        yield from events
            except WebSocketUpgradeError as exc:
                # httpx-ws has closed the refusal's body: ask again to read why
                try:
                    answer = self._http.get(
                        EVENTS_PATH, params=follow.params(), headers=UPGRADE_HEADERS
                    )
                except httpx.HTTPError:
                    answer = exc.response
                raise follow.refused(answer) from None
            except (HTTPXWSException, httpx.TransportError) as exc:
                delay = follow.closed(self.url, exc)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(delay)

    def health(self) -> dict[str, Any]:
        """The node's health; answered (not raised) while it is starting or stopping."""
        return self._send(Calls.view("/health", accept=(503,)))  # type: ignore[no-any-return]

    def ready(self) -> dict[str, Any]:
        """Readiness; ``ready`` is False (not an exception) while a backend is down."""
        return self._send(Calls.view("/ready", accept=(503,)))  # type: ignore[no-any-return]
