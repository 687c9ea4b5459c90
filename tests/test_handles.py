"""Python-native producers: ``@registry.processor`` returns a handle to submit through.

The node (memory backends) is served over real HTTP in the test's trio loop;
the blocking ``Client`` runs in a worker thread, ``AsyncClient`` in the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypedDict

import pytest
import trio

from jobtrio import JobContext, PayloadError, ProcessorHandle, Registry
from jobtrio.actors.node import Node
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.client import AsyncClient, Client
from jobtrio.config import Settings
from jobtrio.jobs import JobStatus
from jobtrio.payloads import from_payload, to_payload
from jobtrio.workflows import chain, chord, group
from tests.test_client import in_thread, serve_node


@dataclass
class Size:
    width: int
    height: int


@dataclass
class Resize:
    image: str
    size: Size
    quality: float = 0.9
    tags: list[str] = field(default_factory=list)
    mode: Literal["fit", "fill"] = "fit"
    note: str | None = None


class Email(TypedDict):
    recipient: str
    subject: NotRequired[str]


registry = Registry(builtins=False)
seen: list[object] = []


@registry.processor("resize", payload=Resize, timeout=30)
async def resize(ctx: JobContext) -> dict:
    seen.append(ctx.data)
    return {"w": ctx.data.size.width, "mode": ctx.data.mode}


@registry.processor("email", payload=Email)
async def email(ctx: JobContext) -> str:
    return ctx.data["recipient"]


@registry.processor("plain")
async def plain(ctx: JobContext) -> dict:
    return ctx.payload


@registry.processor("total")
async def total(ctx: JobContext) -> int:
    return sum(r["n"] for r in ctx.results or [])


@pytest.fixture
async def url() -> AsyncIterator[str]:
    settings = Settings(node_id="handles", worker_count=2, shutdown_grace=0.2)
    node = Node(settings, MemoryBroker(), MemoryStore(), registry)
    async with trio.open_nursery() as nursery:
        yield await serve_node(nursery, node)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


def test_the_decorator_returns_a_handle_still_callable_as_the_function():
    assert isinstance(resize, ProcessorHandle) and resize.type == "resize"
    assert registry.get("resize").fn is resize.fn
    assert registry.get("resize").default_timeout == 30
    assert resize.__name__ == "resize"


async def test_submit_through_client_and_async_client_typed_and_plain(url):
    payload = Resize("a.png", Size(640, 480), tags=["x"], mode="fill")
    with Client(url) as client:
        job = await in_thread(resize.submit, client, payload, priority=8)
        assert job.type == "resize" and job.priority == 8
        assert job.payload["size"] == {"width": 640, "height": 480}
        done = await in_thread(client.wait, job.id, 30)
    assert done.status == JobStatus.COMPLETED and done.result == {"w": 640, "mode": "fill"}
    assert seen[-1] == payload  # the worker built the dataclass back, nested one too
    async with AsyncClient(url) as client:
        job = await email.submit(client, {"recipient": "a@example.com"}, max_retries=0)
        done = await client.wait(job.id, 30)
        assert done.result == "a@example.com"
        # strings stay available: a non-Python producer names the type
        job = await client.submit("plain", {"any": ["thing"]})
        assert (await client.wait(job.id, 30)).result == {"any": ["thing"]}
        job = await plain.submit(client, {"n": 1})
        assert (await client.wait(job.id, 30)).result == {"n": 1}


async def test_the_producer_refuses_a_bad_payload_before_sending(url):
    async with AsyncClient(url) as client:
        with pytest.raises(PayloadError, match=r"payload.size.width must be int, got '640'"):
            await resize.submit(client, {"image": "a", "size": {"width": "640", "height": 1}})
        with pytest.raises(PayloadError, match=r"payload.recipient is missing"):
            await email.submit(client, {"subject": "hi"})
        assert (await client.list_page()).jobs == []  # nothing was sent


async def test_the_worker_refuses_a_bad_payload_before_calling(url):
    async with AsyncClient(url) as client:
        # a producer that skips the check (any language) reaches the worker's
        job = await client.submit("resize", {"image": "a", "size": {"width": 1}}, max_retries=3)
        done = await client.wait(job.id, 30)
    assert done.status == JobStatus.FAILED and done.retry_count == 0  # no retry helps
    assert done.error == ("PayloadError: payload.size.height is missing (Size needs height, width)")


def test_payload_checks_name_the_field():
    ok = {"image": "a", "size": {"width": 1, "height": 2}, "note": None, "quality": 1}
    assert to_payload(Resize, ok) == ok
    assert from_payload(Resize, ok) == Resize("a", Size(1, 2), quality=1)
    cases = [
        ({**ok, "extra": 1}, "payload has the unknown field 'extra'"),
        ({**ok, "mode": "crop"}, "payload.mode must be one of 'fit', 'fill', got 'crop'"),
        ({**ok, "tags": ["a", 2]}, r"payload.tags\[1\] must be str, got 2"),
        ({**ok, "note": 3}, "payload.note must be str | None, got 3"),
        ({**ok, "quality": True}, "payload.quality must be float, got True"),
        ({**ok, "size": [1, 2]}, r"payload.size must be an object \(Size\)"),
    ]
    for payload, message in cases:
        with pytest.raises(PayloadError, match=message):
            to_payload(Resize, payload)
    with pytest.raises(PayloadError, match="payload must be a Resize or a dict, not a str"):
        to_payload(Resize, "a.png")
    with pytest.raises(TypeError, match="payload= takes a dataclass or a TypedDict"):
        Registry(builtins=False).processor("x", payload=int)


async def test_workflows_compose_handles_with_both_clients(url):
    spec = chord([plain.job({"n": i}) for i in range(4)], total.job())
    async with AsyncClient(url) as client:
        submitted = await client.submit_workflow(spec)
        assert submitted.kind == "chord" and len(submitted.jobs) == 5
        done = await client.wait_workflow(submitted.id, 30)
    assert done.status == "completed" and done.jobs[-1].result == 6
    flow = chain(plain.job({"n": 1}), group(plain.job({"n": 2}), plain.job({"n": 3})))
    with Client(url) as client:
        submitted = await in_thread(client.submit_workflow, flow)
        done = await in_thread(client.wait_workflow, submitted.id, 30)
        assert done.status == "completed" and done.counts == {"completed": 3}
        again = await in_thread(client.cancel_workflow, submitted.id)  # nothing left to cancel
        assert again.status == "completed"
        with pytest.raises(PayloadError):  # the typed check still runs inside a workflow
            chain(resize.job({"image": 3}))
