"""Both clients' event stream against what httpx-ws does differently across versions.

httpx-ws 0.10 made ``max_message_size_bytes`` a limit on a whole message (64 KiB by
default, closing with 1009 past it) and the blocking session's ``receive(timeout=)``
raise ``TimeoutError`` where 0.9 raised ``queue.Empty``. These tests pin the client's
answer to both, whichever version is installed. The server here is a bare
trio-websocket one that sends exactly the messages a test needs (a node batches
``lines=true`` messages as its own log reads go, which a test cannot size exactly).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from httpx_ws import WebSocketDisconnect
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from jobtrio.client import AsyncClient, Client, ConnectionFailed
from jobtrio.client.event_follow import MAX_MESSAGE_BYTES, EventFollow

#: httpx-ws's default ``max_message_size_bytes`` (65 KiB in its docs; 65,536 in its code).
HTTPX_WS_DEFAULT_LIMIT = 65_536
READY = json.dumps({"kind": "stream.ready", "node": "fake", "scope": "node", "filters": {}})


def _event_lines(n: int) -> list[str]:
    """``n`` job events as a node writes them, padded like ones with a short error."""
    return [
        json.dumps(
            {
                "id": f"1700000000000-{i}",
                "kind": "job.failed",
                "at": "2026-12-07T12:00:00.000Z",
                "node": "fake",
                "job_id": f"{i:026d}",
                "type": "resize",
                "status": "failed",
                "error": "ValueError: " + "x" * 100,
            },
            separators=(",", ":"),
        )
        for i in range(n)
    ]


@asynccontextmanager
async def fake_stream(messages: list[str]) -> AsyncIterator[str]:
    """A websocket server that sends ``stream.ready`` then ``messages``, then stays open
    until the client leaves; yields its http:// URL."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.send_message(READY)
            for message in messages:
                await ws.send_message(message)
            await ws.get_message()  # the client sends nothing: this waits for its close
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1", 0, None, task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{server.port}"
        nursery.cancel_scope.cancel()


def _read_sync(url: str, n: int) -> list[dict[str, Any]]:
    got = []
    with Client(url) as client:
        for event in client.events(reconnect=False, timeout=60):
            got.append(event)
            if len(got) == n:
                break
    return got


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


async def test_a_message_larger_than_httpx_ws_default_limit_reaches_both_clients() -> None:
    lines = _event_lines(1000)
    message = "\n".join(lines)
    assert len(message.encode()) > 2 * HTTPX_WS_DEFAULT_LIMIT  # what 0.10 refused by default
    async with fake_stream([message]) as url:
        got = await _in_thread(_read_sync, url, len(lines))
        assert [e["id"] for e in got] == [json.loads(line)["id"] for line in lines]
        async with AsyncClient(url) as client, client.events(reconnect=False) as events:
            got = []
            with trio.fail_after(60):
                async for event in events:
                    got.append(event)
                    if len(got) == len(lines):
                        break
        assert [e["id"] for e in got] == [json.loads(line)["id"] for line in lines]


async def test_the_blocking_client_timeout_ends_the_iteration_quietly() -> None:
    """``timeout`` on a quiet stream ends the loop, on every httpx-ws (0.10 raised out)."""

    def follow(url: str) -> list[str]:
        with Client(url) as client:
            return [e["kind"] for e in client.events(control=True, timeout=1.0)]

    async with fake_stream([]) as url:
        assert await _in_thread(follow, url) == ["stream.ready"]


def test_a_message_too_big_for_the_client_is_said_plainly() -> None:
    """httpx-ws 0.10 closes with 1009 past the limit: the user is told what to change,
    and the client does not reconnect to be sent the same message again."""
    follow = EventFollow(None, None, None, None, None, reconnect=True)
    with pytest.raises(ConnectionFailed) as info:
        follow.closed("http://node:8080", WebSocketDisconnect(1009, "Message too big"))
    assert f"larger than the {MAX_MESSAGE_BYTES} bytes this client accepts" in str(info.value)
    assert "filters" in str(info.value)
