"""The awaited client, for trio (or asyncio) code: ``Client``'s methods, awaited.

It only uses httpx and anyio, so it runs under either event loop. Like
``Client`` it takes each request from ``calls`` and hands the answer to
``answers``; ``events`` is a context manager here, since the connection
lives in a task that must end with the block.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
from httpx_ws import HTTPXWSException, WebSocketUpgradeError, aconnect_ws

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
from .errors import JobtrioError, Unavailable, WaitTimeout, connection_failed
from .event_follow import EVENTS_PATH, MAX_MESSAGE_BYTES, UPGRADE_HEADERS, EventFollow
from .waiting import WaitMany, deadline_after, wait_timeout


class AsyncClient:
    """The same API as ``Client``, awaited; use ``async with``, or ``await aclose()``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        self.url, token = url_and_token(url, token)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=request_headers(token, headers),
            timeout=timeout,
            transport=transport,
            verify=tls_verify(verify),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, call: Call) -> httpx.Response:
        body = None if call.json is None else request_body(call.json)
        try:
            if body is None:
                response = await self._http.request(
                    call.method, call.path, params=call.params or None, json=call.json
                )
            else:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params or None,
                    content=body,
                    headers=JSON_BODY,
                )
        except httpx.TransportError as exc:
            raise connection_failed(self.url, exc) from None
        return response

    async def _send(self, call: Call) -> Any:
        return read_answer(await self._request(call), call)

    # -- jobs ------------------------------------------------------------------------
    async def submit(
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
        return job_of(await self._send(Calls.submit(body)))

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        call = Calls.submit_many(jobs)
        return read_jobs(await self._request(call), call)

    async def get(self, job_id: str) -> Job:
        return job_of(await self._send(Calls.get(job_id)))

    async def cancel(self, job_id: str) -> Job:
        return job_of(await self._send(Calls.cancel(job_id)))

    async def purge(self, job_id: str) -> None:
        await self._send(Calls.cancel(job_id, purge=True))

    async def retry(self, job_id: str) -> Job:
        return job_of(await self._send(Calls.retry(job_id)))

    async def submit_workflow(
        self, spec: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Workflow:
        return workflow_of(await self._send(Calls.submit_workflow(spec, idempotency_key)))

    async def get_workflow(self, workflow_id: str) -> Workflow:
        return workflow_of(await self._send(Calls.get_workflow(workflow_id)))

    async def cancel_workflow(self, workflow_id: str) -> Workflow:
        return workflow_of(await self._send(Calls.cancel_workflow(workflow_id)))

    async def wait_workflow(
        self, workflow_id: str, timeout: float | None = None, *, poll_interval: float = 0.05
    ) -> Workflow:
        backoff, deadline = Backoff(poll_interval, 1.0, 1.5), deadline_after(timeout)
        while True:
            last = await self.get_workflow(workflow_id)
            if last.terminal:
                return last
            delay = backoff.next_within(deadline, time.monotonic())
            if delay is None:
                raise WaitTimeout(f"workflow {workflow_id} is still running after {timeout}s")
            await anyio.sleep(delay)

    async def list_page(
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
        return read_page(await self._request(call), call)

    async def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: Time | None = None,
        created_before: Time | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        yielded = 0
        while True:
            page = await self.list_page(
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

    async def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        poll_interval: float = 0.05,
        max_interval: float = 1.0,
    ) -> Job:
        backoff, deadline = Backoff(poll_interval, max_interval, 1.5), deadline_after(timeout)
        last: Job | None = None
        while True:
            try:
                last = await self.get(job_id)
                if last.terminal:
                    return last
            except Unavailable:
                pass
            delay = backoff.next_within(deadline, time.monotonic())
            if delay is None:
                raise wait_timeout(job_id, timeout, last)
            await anyio.sleep(delay)

    async def wait_many(
        self,
        jobs: Iterable[Job | str],
        timeout: float | None = None,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        poll_interval: float = 0.05,
        max_interval: float = 1.0,
    ) -> list[Job]:
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
                        page = await self.list_page(**state.list_kwargs(cursor))
                        for job in page.jobs:
                            state.seen(job)
                        if (cursor := page.next_cursor) is None:
                            break
                else:
                    for job_id in state.open:
                        state.seen(await self.get(job_id))
            except Unavailable:
                pass
            state.settle()
            if not state.open:
                continue
            delay = backoff.next_within(deadline, time.monotonic())
            if delay is None:
                raise state.timeout(timeout)
            await anyio.sleep(delay)

    # -- periodic jobs -------------------------------------------------------------------
    async def schedules(self) -> list[dict[str, Any]]:
        return (await self._send(Calls.schedules()))["schedules"]  # type: ignore[no-any-return]

    async def get_schedule(self, name: str) -> dict[str, Any]:
        return await self._send(Calls.schedule("GET", name))  # type: ignore[no-any-return]

    async def add_schedule(
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
        return await self._send(Calls.add_schedule(body))  # type: ignore[no-any-return]

    async def queues(self) -> dict[str, Any]:
        return await self._send(Calls.queue("GET"))  # type: ignore[no-any-return]

    async def queue(self, name: str) -> dict[str, Any]:
        return await self._send(Calls.queue("GET", name))  # type: ignore[no-any-return]

    async def pause_queue(self, name: str) -> dict[str, Any]:
        return await self._send(Calls.queue("POST", name, "/pause"))  # type: ignore[no-any-return]

    async def resume_queue(self, name: str) -> dict[str, Any]:
        return await self._send(Calls.queue("POST", name, "/resume"))  # type: ignore[no-any-return]

    async def set_rate_limit(
        self, name: str, jobs: int, per: float | dt.timedelta | str
    ) -> dict[str, Any]:
        body = rate_limit_body(jobs, per)
        return await self._send(  # type: ignore[no-any-return]
            Calls.queue("PUT", name, "/rate_limit", body)
        )

    async def clear_rate_limit(self, name: str) -> dict[str, Any]:
        return await self._send(  # type: ignore[no-any-return]
            Calls.queue("DELETE", name, "/rate_limit")
        )

    async def delete_schedule(self, name: str) -> None:
        await self._send(Calls.schedule("DELETE", name))

    async def elections(self, limit: int = 50) -> list[dict[str, Any]]:
        return (await self._send(Calls.elections(limit)))["elections"]  # type: ignore[no-any-return]

    # -- views -------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        return await self._send(Calls.view("/api/v1/stats"))  # type: ignore[no-any-return]

    async def workers(self) -> list[dict[str, Any]]:
        return (await self._send(Calls.view("/api/v1/workers")))["workers"]  # type: ignore[no-any-return]

    async def nodes(self) -> list[dict[str, Any]]:
        return (await self._send(Calls.view("/api/v1/nodes")))["nodes"]  # type: ignore[no-any-return]

    async def leader(self) -> dict[str, Any]:
        return await self._send(Calls.view("/api/v1/leader"))  # type: ignore[no-any-return]

    async def election(self) -> dict[str, Any]:
        return await self._send(Calls.view("/api/v1/election"))  # type: ignore[no-any-return]

    async def cluster(self) -> dict[str, Any]:
        return await self._send(Calls.view("/api/v1/cluster"))  # type: ignore[no-any-return]

    @asynccontextmanager
    async def events(
        self,
        *,
        kind: str | Iterable[str] | None = None,
        type: str | Iterable[str] | None = None,
        job_id: str | Iterable[str] | None = None,
        node: str | Iterable[str] | None = None,
        since: str | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """``Client.events`` for async code, as a context manager around the iterator::

            async with client.events(kind="job") as events:
                async for event in events:
                    ...

        The block starts once the node has subscribed this client (its
        ``stream.ready``), so nothing that happens inside it is missed. (A
        context manager, because the connection lives in a task of its own,
        which must end when the block does, not whenever an abandoned iterator
        is collected.)
        """
        follow = EventFollow(kind, type, job_id, node, since, reconnect)
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](16)
        try:
            async with anyio.create_task_group() as tasks:
                # the block starts once the node has subscribed us: nothing after is missed
                await tasks.start(self._follow_events, follow, send)
                async with receive:
                    yield receive
                tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # the follower's refusal, raised as itself rather than wrapped in a group
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], JobtrioError):
                raise group.exceptions[0] from None
            raise

    async def _follow_events(
        self,
        follow: EventFollow,
        send: anyio.abc.ObjectSendStream[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        async with send:
            while True:
                try:
                    async with aconnect_ws(
                        EVENTS_PATH,
                        self._http,
                        params=follow.params(),
                        max_message_size_bytes=MAX_MESSAGE_BYTES,
                    ) as ws:
                        while True:
                            events = follow.message(await ws.receive_text())
                            for event in events:
                                await send.send(event)
                            if not events and not started:
                                started = True
                                task_status.started()
                except WebSocketUpgradeError as exc:
                    try:
                        answer = await self._http.get(
                            EVENTS_PATH, params=follow.params(), headers=UPGRADE_HEADERS
                        )
                    except httpx.HTTPError:
                        answer = exc.response
                    raise follow.refused(answer) from None
                except (HTTPXWSException, httpx.TransportError) as exc:
                    delay = follow.closed(self.url, exc)
                await anyio.sleep(delay)

    async def health(self) -> dict[str, Any]:
        return await self._send(Calls.view("/health", accept=(503,)))  # type: ignore[no-any-return]

    async def ready(self) -> dict[str, Any]:
        return await self._send(Calls.view("/ready", accept=(503,)))  # type: ignore[no-any-return]
