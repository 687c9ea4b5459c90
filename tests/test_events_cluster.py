"""The event stream across a cluster: two nodes sharing the test session's Redis.

Both nodes run in this trio loop with their real pieces: Redis broker and
store on one key prefix, the peer transport over websockets on loopback, the
HTTP API under hypercorn. A client connected to node A sees what ran on
node B, and a client that reconnects with ``since`` gets exactly what it
missed, checked against the Redis Stream itself.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import trio
from hypercorn.trio import serve as hypercorn_serve

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.backends import open_backends
from jobtrio.backends.redis.events import RedisEventLog
from jobtrio.client import AsyncClient
from jobtrio.config import Settings
from jobtrio.eventlog import parse_id
from jobtrio.server import build_cluster, hypercorn_config
from tests.servers import RedisServer, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class Member:
    def __init__(self, node: Node, url: str) -> None:
        self.node = node
        self.url = url


async def start_member(
    nursery: trio.Nursery, redis_url: str, prefix: str, name: str, port: int, peer: int, **more: Any
) -> Member:
    settings = Settings(
        node_id=name,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        cluster_port=port,
        cluster_host="127.0.0.1",
        cluster_peers=(f"127.0.0.1:{peer}",),
        cluster_secret="s3cret-for-tests",
        election_timeout=1.0,
        election_interval=0.3,
        shutdown_grace=0.2,
        dispatch_prefetch=0,
        **more,
    )
    broker, store = await open_backends(settings)
    cluster = build_cluster(settings)
    assert cluster is not None
    node = Node(settings, broker, store, cluster=cluster[0])
    await nursery.start(cluster[1].run)
    await nursery.start(node.run)
    http = free_port()
    config = hypercorn_config(settings, "127.0.0.1", http)
    config.graceful_timeout = 0.1
    await nursery.start(functools.partial(hypercorn_serve, create_app(node), config))
    return Member(node, f"http://127.0.0.1:{http}")


@pytest.fixture
async def cluster(redis_server: RedisServer) -> AsyncIterator[tuple[Member, Member, str]]:
    prefix = "ev" + uuid.uuid4().hex[:8]
    pa, pb = free_port(), free_port()
    async with trio.open_nursery() as nursery:
        a = await start_member(nursery, redis_server.url, prefix, "a", pa, pb, worker_count=1)
        b = await start_member(nursery, redis_server.url, prefix, "b", pb, pa, worker_count=4)
        await wait_until(
            lambda: (
                a.node.leadership.view.leader_id is not None
                and a.node.leadership.view.leader_id == b.node.leadership.view.leader_id
            ),
            timeout=20,
            message="one leader for both nodes",
        )
        yield a, b, prefix
        for member in (a, b):
            member.node.request_stop()
        for member in (a, b):
            await member.node.stopped.wait()
        nursery.cancel_scope.cancel()
    for member in (a, b):
        await member.node.broker.close()
        await member.node.store.close()


def stream_kinds(redis_url: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """Everything in the Redis Stream, as (id, event)."""
    import json

    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange("{" + prefix + "}:events")
    finally:
        client.close()
    return [(i.decode(), json.loads(f[b"e"])) for i, f in entries]


async def test_a_client_on_one_node_sees_the_whole_cluster_and_resumes_exactly(
    cluster: tuple[Member, Member, str], redis_server: RedisServer
) -> None:
    a, b, prefix = cluster
    assert isinstance(a.node.event_stream.log, RedisEventLog)
    async with AsyncClient(a.url) as on_a, AsyncClient(b.url) as on_b:
        first: list[dict[str, Any]] = []
        async with on_a.events(kind="job") as events:
            # submitted through B; A has one worker, so B runs most of them
            jobs = await on_b.submit_many(
                [{"type": "sleep", "payload": {"seconds": 0.2}} for _ in range(6)]
            )
            ids = {j.id for j in jobs}
            done: set[str] = set()
            with trio.fail_after(20):
                async for event in events:
                    first.append(event)
                    if event["kind"] == "job.completed":
                        done.add(event["job_id"])
                    if done == ids:
                        break
        ran_on = {e["job_id"]: e["node"] for e in first if e["kind"] == "job.completed"}
        assert "b" in ran_on.values(), ran_on  # seen on A, run on B
        assert {e["node"] for e in first if e["kind"] == "job.submitted"} == {"b"}

        # disconnected now: more happens; reconnecting with the last id misses nothing
        last = first[-1]["id"]
        more = await on_b.submit_many([{"type": "noop"} for _ in range(5)])
        more_ids = {j.id for j in more}
        resumed: list[dict[str, Any]] = []
        with trio.fail_after(20):
            async with on_a.events(kind="job", since=last) as events:
                async for event in events:
                    resumed.append(event)
                    finished = {e["job_id"] for e in resumed if e["kind"] == "job.completed"}
                    if finished >= more_ids:
                        break
    got = [e["id"] for e in first + resumed]
    assert len(got) == len(set(got)), "an event was delivered twice"
    assert [parse_id(i) for i in got] == sorted(parse_id(i) for i in got)
    # exactly the stream's job events after the first one seen, up to the last one seen
    everything = [
        i
        for i, e in await trio.to_thread.run_sync(stream_kinds, redis_server.url, prefix)
        if str(e["kind"]).startswith("job.")
    ]
    start = everything.index(got[0])
    assert everything[start : start + len(got)] == got

    # cluster events flowed into the same stream, from both nodes
    kinds = {(e["kind"], e["node"]) for _, e in stream_kinds(redis_server.url, prefix)}
    assert {("member.up", "a"), ("member.up", "b")} <= kinds
    assert {("leader.changed", "a"), ("leader.changed", "b")} <= kinds
    for member in (a, b):
        text = member.node.metrics.render().decode()
        sent = [
            line
            for line in text.splitlines()
            if line.startswith('cluster_messages_total{direction="sent"')
            and not line.endswith(" 0.0")
        ]
        assert sent, "no peer message counted"


async def test_the_redis_stream_keeps_its_newest_events_past_the_cap(
    redis_server: RedisServer,
) -> None:
    """``EVENT_STREAM_MAXLEN`` on Redis: after appends of 1,200 events in batches of 150 to a
    log capped at 250, the stream holds the newest ones, at least 250 and less than a
    macro node (100 entries) more."""
    import json

    from jobtrio.backends.redis.wire import RedisConnection

    connection = RedisConnection.from_url(redis_server.url)
    log = RedisEventLog(connection, "trim" + uuid.uuid4().hex[:8], 250)
    for batch in range(8):
        await log.append([json.dumps({"n": batch * 150 + i}) for i in range(150)])
    client = redis.Redis.from_url(redis_server.url)
    try:
        length = client.xlen(log.key)
    finally:
        client.close()
    assert 250 <= length < 350
    kept = await log.read_after((0, 0), 1000)
    assert [json.loads(e.body)["n"] for e in kept] == list(range(1200 - length, 1200))
    await log.close()


async def test_a_resume_id_the_redis_stream_trimmed_is_reported_as_a_gap(
    redis_server: RedisServer,
) -> None:
    """Redis does not move ``max-deleted-entry-id`` when it trims: a client resuming from
    an event trimmed away must still hear of the gap (docs/observability.md, ``since``),
    and one resuming from a kept event must not."""
    import json

    from jobtrio.backends.redis.wire import RedisConnection

    connection = RedisConnection.from_url(redis_server.url)
    log = RedisEventLog(connection, "gap" + uuid.uuid4().hex[:8], 250)
    await log.append([json.dumps({"n": i}) for i in range(10)])
    early = await log.last_id()
    assert await log.lost_after(early) is None and await log.lost_after((0, 0)) is None
    for batch in range(8):
        await log.append([json.dumps({"n": batch * 150 + i}) for i in range(150)])
    kept = await log.read_after((0, 0), 1000)
    gone = await log.lost_after(early)
    assert gone is not None and early < gone < kept[0].id
    assert await log.lost_after((0, 0)) == gone
    assert await log.lost_after(kept[0].id) is None and await log.lost_after(kept[5].id) is None
    await log.close()
