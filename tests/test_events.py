"""The event log, the stream over a real websocket, filters, resume, slow consumers.

Nodes run with memory backends in the test's trio loop, served by hypercorn
on a free port; clients are the project's own (``AsyncClient.events``) and,
where the test needs a client that misbehaves, raw trio-websocket.
"""

from __future__ import annotations

import functools
import json
import math
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

from jobtrio.actors.dispatch.finisher import publish_finished
from jobtrio.actors.node import Node
from jobtrio.client import AsyncClient, InvalidRequest, JobtrioError
from jobtrio.eventlog import MemoryEventLog, format_id, parse_id
from jobtrio.events import EventBus, JobEvents
from jobtrio.eventstream import (
    KINDS,
    EventFilter,
    EventStream,
    FilterError,
    job_fields,
    normalize,
)
from jobtrio.jobs import Job, JobStatus
from jobtrio.metrics import NodeMetrics
from tests.test_api import make_node
from tests.test_client import serve_node
from tests.test_metrics import scrape, value
from tests.waiting import wait_until


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the memory log -------------------------------------------------------------------------


async def test_memory_log_ids_grow_and_trimming_is_reported() -> None:
    clock = Clock()
    log = MemoryEventLog(maxlen=5, clock=clock)
    await log.append(["{}"] * 3)
    clock.now += 0.5
    await log.append(["{}"] * 4)
    entries = await log.read_after((0, 0), 100)
    ids = [e.id for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == 5 and len(log) == 5
    assert ids[0] == (1_000_000, 2)  # the 3rd of the first millisecond: the two before are gone
    assert await log.last_id() == (1_000_500, 3)
    # resuming after an id still kept: nothing lost; after one trimmed: the gap is named
    assert await log.lost_after(ids[0]) is None
    assert await log.lost_after((1_000_000, 0)) == (1_000_000, 1)
    # an id from before this log existed (a restarted node) is never taken as recent
    assert await log.lost_after((999_000, 0)) is not None
    assert [e.id for e in await log.read_after(ids[2], 10)] == ids[3:]


async def test_memory_log_wait_after_wakes_on_append() -> None:
    log = MemoryEventLog(maxlen=10, clock=Clock())
    got: list[Any] = []

    async def reader() -> None:
        got.extend(await log.wait_after(await log.last_id(), 10, timeout=5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await log.append(['{"kind":"x"}'])
    assert [e.body for e in got] == ['{"kind":"x"}']


def test_ids_parse_and_refuse_garbage() -> None:
    assert parse_id(" 1712345678901-7 ") == (1712345678901, 7)
    assert format_id((5, 0)) == "5-0"
    for bad in ("", "abc", "1-", "-1", "1-2-3", "1.5-0"):
        with pytest.raises(ValueError, match="is not an event id"):
            parse_id(bad)


def test_filters_parse_and_match() -> None:
    f = EventFilter.parse({"kind": "job.completed,leader", "type": "email", "node": "n1"})
    job = {"kind": "job.completed", "type": "email", "node": "n1", "job_id": "X"}
    assert f.matches(job)
    assert not f.matches({**job, "type": "sms"})
    assert not f.matches({**job, "node": "n2"})
    assert not f.matches({**job, "kind": "job.failed"})
    assert EventFilter.parse({"kind": "leader.*"}).matches({"kind": "leader.changed"})
    assert EventFilter.parse({"kind": "job"}).matches({"kind": "stream.lost"})  # always told
    for args, field in (
        ({"kind": "jobs.done"}, "kind"),
        ({"job_id": "nope"}, "job_id"),
        ({"type": " , "}, "type"),
    ):
        with pytest.raises(FilterError) as info:
            EventFilter.parse(args)
        assert info.value.field == field


def test_normalize_keeps_the_payload_out() -> None:
    event = normalize(
        {
            "type": "schedule.fired",
            "node_id": "n1",
            "at": 0.0,
            "schedule": "s",
            "job": {"id": "J", "type": "t", "status": "pending", "payload": {"secret": 1}},
        }
    )
    assert event["kind"] == "schedule.fired" and event["at"] == "1970-01-01T00:00:00.000000Z"
    assert event["job_id"] == "J" and "payload" not in json.dumps(event)


def _jobs_for_events() -> list[Job]:
    """Jobs whose event fields take every path of the encoders: plain, unicode, a lone
    surrogate (orjson refuses it: the stdlib writes it, U+FFFD in its place), an int past
    64 bits."""
    jobs = [Job(id=f"J{i:025d}", type="t", created_at=1.0) for i in range(5)]
    jobs[1].error, jobs[1].worker_id = 'boom: "quoted" \u00e9\u4e2d\n', "n/w1"
    jobs[2].error = "lone \ud800 surrogate"
    jobs[3].owner, jobs[3].type = "alice", "other"
    jobs[4].priority = 2**70
    return jobs


async def test_published_together_records_and_counts_what_one_by_one_would() -> None:
    """``publish_jobs`` hands the stream's recorder one batch; what it records must be
    what ``publish`` of each job would have recorded, text for text and in order, with
    the events published around it, and the metrics must count every job."""
    jobs = _jobs_for_events()
    recorded: list[list[str]] = []
    counted = []
    for together in (False, True):
        clock = Clock(1_000.25)
        bus, metrics = EventBus("n1", clock), NodeMetrics("n1")
        log = MemoryEventLog(1000, clock)
        stream = EventStream(bus, log, metrics, clock)
        with bus.subscribe(buffer=math.inf) as plain:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.run)
                await trio.testing.wait_all_tasks_blocked()
                bus.publish("member.up", member="n2", address="a:1")
                for job in jobs:  # one at a time, each at its own time, as workers free up
                    clock.now += 0.0015
                    if together:
                        bus.publish_jobs("job.started", [job])
                    else:
                        bus.publish("job.started", job=job_fields(job))
                if together:
                    bus.publish_jobs("job.completed", jobs)
                    bus.publish_jobs("job.failed", jobs[:2])
                else:
                    for job in jobs:
                        bus.publish("job.completed", job=job_fields(job))
                    for job in jobs[:2]:
                        bus.publish("job.failed", job=job_fields(job))
                bus.publish("node.stopping")
                await wait_until(functools.partial(_recorded, stream, 14))
                nursery.cancel_scope.cancel()
            # a subscriber that did not ask for batches gets the events one by one
            events = []
            while True:
                try:
                    events.append(plain.receive_nowait())
                except trio.WouldBlock:
                    break
        assert [e["type"] for e in events] == ["member.up"] + ["job.started"] * 5 + [
            "job.completed"
        ] * 5 + ["job.failed"] * 2 + ["node.stopping"]
        assert [e["job"]["job_id"] for e in events[1:11]] == [j.id for j in jobs] * 2
        assert len({e["at"] for e in events[1:6]}) == 5
        recorded.append([e.body for e in await log.read_after((0, 0), 100)])
        m = scrape(metrics.render().decode())
        counted.append(
            (
                value(m, "jobs_completed_total", type="t"),
                value(m, "jobs_completed_total", type="other"),
                value(m, "jobs_failed_total", type="t"),
            )
        )
    assert recorded[1] == recorded[0]
    assert json.loads(recorded[1][7])["error"] == jobs[1].error
    assert json.loads(recorded[1][8])["error"] == "lone \ufffd surrogate"
    assert json.loads(recorded[1][10])["priority"] == 2**70
    assert counted[1] == counted[0] == (4.0, 1.0, 2.0)


async def test_a_batch_past_the_pending_limit_keeps_its_oldest_and_counts_the_rest() -> None:
    clock = Clock()
    bus, metrics = EventBus("n1", clock), NodeMetrics("n1")
    log = MemoryEventLog(1000, clock)
    stream = EventStream(bus, log, metrics, clock, pending_limit=3)
    jobs = _jobs_for_events()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish_jobs("job.started", jobs)  # 5 events in one turn of the recorder
        await wait_until(lambda: stream.recorded == 4)
        nursery.cancel_scope.cancel()
    bodies = [json.loads(e.body) for e in await log.read_after((0, 0), 100)]
    assert [b.get("job_id") for b in bodies[:3]] == [j.id for j in jobs[:3]]
    assert bodies[3]["kind"] == "stream.lost" and bodies[3]["lost"] == 2
    assert stream.lost == 2


def test_jobs_published_one_call_after_another_reach_the_recorder_as_one_batch() -> None:
    """Until the subscriber takes it, a batch gathers the next calls' jobs of its kind;
    any other event in between, or the subscriber taking it, starts a new one."""
    clock = Clock()
    bus = EventBus("n1", clock)
    jobs = _jobs_for_events()
    with bus.subscribe(buffer=100, batches=True) as recorder:
        for job in jobs[:3]:
            clock.now += 1
            bus.publish_jobs("job.started", [job])
        bus.publish_jobs("job.completed", jobs[:1])
        bus.publish("member.up", member="n2")
        bus.publish_jobs("job.completed", jobs[1:2])
        first = recorder.receive_nowait()
        assert isinstance(first, JobEvents) and first.kind == "job.started"
        assert [f["job_id"] for f in first.jobs] == [j.id for j in jobs[:3]]
        assert first.ats == [1_001.0, 1_002.0, 1_003.0]
        first.open = False  # taken, as the recorder does
        bus.publish_jobs("job.started", jobs[3:4])
        items = []
        while True:
            try:
                items.append(recorder.receive_nowait())
            except trio.WouldBlock:
                break
    assert [(i.kind, len(i.jobs)) if isinstance(i, JobEvents) else i["type"] for i in items] == [
        ("job.completed", 1),
        "member.up",
        ("job.completed", 1),
        ("job.started", 1),
    ]
    assert bus.published == 7


def test_two_batch_subscribers_each_gather_their_own_batch() -> None:
    """A batch gathers later calls' jobs in place: each subscriber's batch is a list of
    its own, or one subscriber's gathering would show twice in the other's."""
    clock = Clock()
    bus = EventBus("n1", clock)
    jobs = _jobs_for_events()
    with (
        bus.subscribe(buffer=100, batches=True) as first,
        bus.subscribe(buffer=100, batches=True) as second,
    ):
        for job in jobs[:3]:
            clock.now += 1
            bus.publish_jobs("job.started", [job])
        for recorder in (first, second):
            batch = recorder.receive_nowait()
            assert isinstance(batch, JobEvents)
            assert [f["job_id"] for f in batch.jobs] == [j.id for j in jobs[:3]]
            assert batch.ats == [1_001.0, 1_002.0, 1_003.0]


async def test_a_batch_submission_is_published_as_one_batch_in_its_order() -> None:
    node = make_node()
    with node.events.subscribe(buffer=100, batches=True) as recorder:
        jobs = await node.submit_many([{"type": "noop", "priority": p} for p in (1, 9, 5)])
        item = recorder.receive_nowait()
    assert isinstance(item, JobEvents) and item.kind == "job.submitted"
    assert [f["job_id"] for f in item.jobs] == [j.id for j in jobs]
    assert [f["priority"] for f in item.jobs] == [1, 9, 5]


def test_a_finish_batch_of_mixed_outcomes_is_published_in_order() -> None:
    """The finisher publishes a run of one status as one batch: the events keep the order
    of the batch and each job's own kind."""
    bus = EventBus("n1", Clock())
    jobs = _jobs_for_events()
    statuses = ["completed", "completed", "failed", "retrying", "completed"]
    for job, status in zip(jobs, statuses, strict=True):
        job.status = JobStatus(status)
    with bus.subscribe(buffer=math.inf) as plain:
        publish_finished(bus, jobs)
        events = [plain.receive_nowait() for _ in jobs]
    assert [(e["type"], e["job"]["job_id"]) for e in events] == [
        (f"job.{status}", job.id) for job, status in zip(jobs, statuses, strict=True)
    ]
    assert bus.published == 5


def _recorded(stream: EventStream, n: int) -> bool:
    return stream.recorded == n


# -- over a websocket -----------------------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[tuple[Node, str]]:
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        yield node, url
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def collect(
    client: AsyncClient, until: Any, timeout: float = 10, **filters: Any
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with trio.fail_after(timeout):
        async with client.events(**filters) as events:
            async for event in events:
                got.append(event)
                if until(got):
                    return got
    return got


async def test_a_job_lifecycle_flows_with_ids_and_filters(served: tuple[Node, str]) -> None:
    node, url = served
    async with AsyncClient(url) as client:
        async with client.events(type="fail") as failing, client.events() as everything:
            ok = await client.submit("noop")
            bad = await client.submit("fail", max_retries=1)
            seen: list[dict[str, Any]] = []
            with trio.fail_after(10):
                async for event in failing:
                    seen.append(event)
                    if event["kind"] == "job.failed":
                        break
            # job.submitted is published once the Broker's enqueue answered: a worker may
            # have claimed and started the job meanwhile (docs/observability.md)
            kinds = [e["kind"] for e in seen]
            assert kinds.count("job.submitted") == 1
            kinds.remove("job.submitted")
            assert kinds == ["job.started", "job.retrying", "job.started", "job.failed"]
            assert {e["job_id"] for e in seen} == {bad.id}
            assert seen[-1]["error"] and seen[-1]["node"] == "api-node"
            ids = [parse_id(e["id"]) for e in seen]
            assert ids == sorted(ids)
            every: list[dict[str, Any]] = []
            with trio.fail_after(10):
                async for event in everything:
                    every.append(event)
                    if event["kind"] == "job.failed":
                        break
        assert {(e["job_id"], e["kind"]) for e in every} >= {
            (ok.id, "job.submitted"),
            (ok.id, "job.started"),
            (ok.id, "job.completed"),
        }
        # by job id and kind
        got = await collect(
            client,
            lambda got: True,
            job_id=ok.id,
            kind="job.completed",
            since="0-0",
        )
        assert got[0]["kind"] == "stream.gap"  # the node's stream starts at its start
        rest = await collect(client, lambda got: True, job_id=ok.id, since=every[0]["id"])
        assert rest[0]["job_id"] == ok.id


async def test_cancel_and_lease_events() -> None:
    node = make_node(job_lease=0.6)  # the heartbeat renews every 0.2 s
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        await _cancel_and_lease_events(node, url)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def _cancel_and_lease_events(node: Node, url: str) -> None:
    async with AsyncClient(url) as client:
        async with client.events(kind="job.cancelled,job.lease_lost") as events:
            job = await client.submit("sleep", {"seconds": 30})
            await wait_until(lambda: node.dispatcher.in_flight == 1)
            # the broker moves on without the node (as when a peer's cancel never reached
            # it): its next renewal finds the lease gone
            await node.broker.cancel(job.id, node.clock())
            other = await client.submit("noop", scheduled_at=node.clock() + 3600)
            await client.cancel(other.id)
            kinds = []
            with trio.fail_after(10):
                async for event in events:
                    kinds.append((event["kind"], event["job_id"]))
                    if len(kinds) == 2:
                        break
    assert set(kinds) == {("job.lease_lost", job.id), ("job.cancelled", other.id)}


async def test_bad_requests_are_refused_with_the_error_shape(served: tuple[Node, str]) -> None:
    _node, url = served
    async with AsyncClient(url) as client:
        for filters, field in (
            ({"kind": "nonsense"}, "kind"),
            ({"since": "yesterday"}, "since"),
            ({"job_id": "123"}, "job_id"),
        ):
            with pytest.raises(InvalidRequest) as info:
                await collect(client, lambda got: True, **filters)
            assert info.value.status == 400 and info.value.field == field
            assert "Traceback" not in info.value.message
    # a websocket handshake with an unknown parameter: 400 and the JSON shape
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
    }
    async with httpx.AsyncClient() as http:
        response = await http.get(url + "/api/v1/events?colour=blue", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "colour"


async def test_resume_after_a_reconnect_misses_nothing_and_repeats_nothing(
    served: tuple[Node, str],
) -> None:
    node, url = served
    async with AsyncClient(url) as client:
        first: list[dict[str, Any]] = []
        async with client.events(kind="job") as events:
            await client.submit_many([{"type": "noop"} for _ in range(5)])
            with trio.fail_after(10):
                async for event in events:
                    first.append(event)
                    if len(first) == 4:
                        break  # disconnect in the middle of the flow
        await client.submit_many([{"type": "noop"} for _ in range(5)])
        await wait_until(lambda: node.dispatcher.finished == 10)
        rest = await collect(
            client, lambda got: len(first) + len(got) == 30, kind="job", since=first[-1]["id"]
        )
    ids = [e["id"] for e in first + rest]
    assert len(ids) == 30 == len(set(ids))  # 10 jobs x submitted, started, completed
    assert [parse_id(i) for i in ids] == sorted(parse_id(i) for i in ids)


async def test_stream_gap_after_trimming() -> None:
    node = make_node(event_stream_maxlen=5)
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        async with AsyncClient(url) as client:
            async with client.events() as events:
                await client.submit("noop")
                with trio.fail_after(10):
                    first = await events.receive()
            await client.submit_many([{"type": "noop"} for _ in range(5)])
            await wait_until(lambda: node.event_stream.recorded >= 18)
            got = await collect(client, lambda got: len(got) == 6, since=first["id"])
        assert got[0]["kind"] == "stream.gap"
        assert first["id"] in got[0]["message"] and "newest 5 events" in got[0]["message"]
        assert len(got) == 6 and all("id" in e for e in got[1:])  # the 5 kept
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def open_stalled_consumer(url: str) -> trio.SocketStream:
    """A websocket client that completes the handshake and then never reads.

    Its receive buffer is made small before connecting, so the node's sends
    block soon, as they would for a client on a slow link or a stuck browser.
    """
    host, port = url.removeprefix("http://").split(":")
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    await stream.send_all(
        (
            "GET /api/v1/events?kind=job HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2xvdy1jb25zdW1lci0xMg==\r\n\r\n"
        ).encode()
    )
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += await stream.receive_some(1)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    return stream


async def test_a_slow_consumer_is_dropped_and_the_others_get_everything() -> None:
    node = make_node()
    node.event_stream.consumer_buffer = 2000
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        stalled = await open_stalled_consumer(url)
        fast: list[dict[str, Any]] = []
        async with AsyncClient(url) as client:

            async def read_fast(task_status: trio.TaskStatus[None]) -> None:
                async with client.events(kind="job", reconnect=False) as events:
                    task_status.started()
                    async for event in events:
                        fast.append(event)

            async with trio.open_nursery() as readers:
                await readers.start(read_fast)
                submitted = 0
                with trio.fail_after(60):
                    while node.metrics.stream_dropped._value.get() == 0:
                        await client.submit_many([{"type": "noop"}] * 250)
                        submitted += 250
                        await wait_until(lambda n=submitted: len(fast) == 3 * n, timeout=30)
                    # the node went on at its pace: the stalled one cost no job, no event
                    await client.submit_many([{"type": "noop"}] * 250)
                    submitted += 250
                    await wait_until(lambda n=submitted: len(fast) == 3 * n, timeout=30)
                readers.cancel_scope.cancel()
        assert node.dispatcher.finished == submitted
        assert len({e["id"] for e in fast}) == 3 * submitted
        assert node.metrics.stream_dropped._value.get() == 1  # only the stalled one
        # the stalled one, reading at last, finds the documented close code and a resume id
        data = b""
        with trio.fail_after(10):
            while True:
                chunk = await stalled.receive_some(65536)
                if not chunk:
                    break
                data += chunk
                if b"since=" in data[-200:]:
                    break
        close = data.rfind(b"\x88")  # the close frame: 0x88, length, code, reason
        assert close >= 0 and int.from_bytes(data[close + 2 : close + 4], "big") == 4001
        assert b"too slow; resume with since=" in data[close:]
        await stalled.aclose()
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def test_a_stopping_node_closes_streams_with_going_away() -> None:
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        async with open_websocket_url(url.replace("http", "ws") + "/api/v1/events") as ws:
            assert json.loads(await ws.get_message())["kind"] == "stream.ready"
            node.request_stop()
            with pytest.raises(ConnectionClosed) as info, trio.fail_after(10):
                while True:
                    await ws.get_message()
        assert info.value.reason.code == 1001
        assert "resume with since=" in (info.value.reason.reason or "")
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def test_without_a_log_the_route_says_so() -> None:
    node = make_node(event_stream_maxlen=0)
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        async with AsyncClient(url) as client:
            with pytest.raises(JobtrioError) as info:
                await collect(client, lambda got: True)
        assert info.value.status == 503 and "EVENT_STREAM_MAXLEN=0" in info.value.message
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


def test_every_kind_the_node_publishes_is_documented() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "jobtrio"
    published = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        published |= set(re.findall(r'publish(?:_jobs)?\(\s*"([a-z_]+\.[a-z_]+)"', text))
    published |= {f"job.{s}" for s in ("completed", "failed", "retrying")}  # f"job.{status}"
    assert published - set(KINDS) == set()
    doc = (root.parent / "docs" / "observability.md").read_text()
    assert [k for k in KINDS if f"`{k}`" not in doc] == []


class _RefusingOnce(MemoryEventLog):
    """A log whose first append fails with an error that is no outage (a bug, a Redis
    error reply): before, the recorder crashed into the same batch at every restart."""

    def __init__(self, maxlen: int, clock: Clock) -> None:
        super().__init__(maxlen, clock)
        self.refused = 0

    async def append(self, bodies):  # type: ignore[no-untyped-def]
        if not self.refused:
            self.refused = len(bodies)
            raise ValueError("ERR something the log will never take")
        await super().append(bodies)


async def test_a_batch_the_log_refuses_for_good_is_counted_lost_and_the_rest_flow() -> None:
    clock = Clock()
    bus, metrics = EventBus("n1", clock), NodeMetrics("n1")
    log = _RefusingOnce(1000, clock)
    stream = EventStream(bus, log, metrics, clock)
    jobs = _jobs_for_events()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish_jobs("job.started", jobs[:2])
        await wait_until(lambda: log.refused)
        bus.publish_jobs("job.completed", jobs[:2])
        await wait_until(lambda: stream.recorded >= 3)
        nursery.cancel_scope.cancel()
    bodies = [json.loads(e.body) for e in await log.read_after((0, 0), 100)]
    assert bodies[0]["kind"] == "stream.lost" and bodies[0]["lost"] == log.refused == 2
    assert [(b["kind"], b["job_id"]) for b in bodies[1:]] == [
        ("job.completed", jobs[0].id),
        ("job.completed", jobs[1].id),
    ]
    assert stream.lost == 2
