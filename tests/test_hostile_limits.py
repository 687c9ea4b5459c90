"""Limits, each answered with a clear 413 or 429 (and nothing stored):
request body, batch size, payload size, websocket message size, login
attempts (tests/test_auth.py), open event streams per client address.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import trio
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio
from quart_trio.testing.connections import WebsocketResponseError
from trio_websocket import ConnectionClosed, open_websocket_url

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.context import MAX_BATCH_JOBS
from jobtrio.server import WEBSOCKET_MAX_MESSAGE_BYTES, hypercorn_config
from tests.servers import free_port
from tests.test_api import MAX_PAYLOAD, app, make_node, node  # noqa: F401 - fixtures
from tests.test_hostile_input import assert_nothing_stored


async def error_of(response: Any) -> dict[str, Any]:
    return (await response.get_json())["error"]


async def test_a_payload_over_max_payload_bytes_is_413(app: QuartTrio) -> None:  # noqa: F811
    response = await app.test_client().post(
        "/api/v1/jobs", json={"type": "noop", "payload": {"x": "a" * (MAX_PAYLOAD + 1)}}
    )
    assert response.status_code == 413
    error = await error_of(response)
    assert error["code"] == "payload_too_large" and error["field"] == "payload"
    assert str(MAX_PAYLOAD) in error["message"]
    await assert_nothing_stored(app)


async def test_a_batch_over_the_job_limit_is_413(app: QuartTrio) -> None:  # noqa: F811
    response = await app.test_client().post(
        "/api/v1/jobs/batch", json={"jobs": [{"type": "noop"}] * (MAX_BATCH_JOBS + 1)}
    )
    assert response.status_code == 413
    error = await error_of(response)
    assert error["code"] == "too_many_jobs" and str(MAX_BATCH_JOBS) in error["message"]
    await assert_nothing_stored(app)


async def test_a_body_over_the_limit_is_413_before_it_is_read(app: QuartTrio) -> None:  # noqa: F811
    response = await app.test_client().post(
        "/api/v1/jobs",
        data=b"{" + b" " * (MAX_PAYLOAD + 128 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["Connection"] == "close"


async def test_open_event_streams_per_client_are_limited() -> None:
    limited = make_node(websockets_per_client=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(limited.run)
        client = create_app(limited).test_client()
        async with client.websocket("/api/v1/events") as first:
            assert json.loads(await first.receive())["kind"] == "stream.ready"
            async with client.websocket("/api/v1/events") as second:
                assert json.loads(await second.receive())["kind"] == "stream.ready"
                with pytest.raises(BaseExceptionGroup) as info:
                    async with client.websocket("/api/v1/events") as third:
                        await third.receive()
                [error] = info.value.exceptions
                assert isinstance(error, WebsocketResponseError)
                assert error.response.status_code == 429
                assert error.response.headers["Retry-After"] == "1"
                body = await error.response.get_json()
                assert body["error"]["code"] == "too_many_connections"
            # one closed: room for another
            async with client.websocket("/api/v1/events") as again:
                assert json.loads(await again.receive())["kind"] == "stream.ready"
        limited.request_stop()


async def test_a_websocket_message_over_the_limit_closes_the_stream_with_1009() -> None:
    served: Node = make_node()
    port = free_port()
    config = hypercorn_config(served.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        await nursery.start(served.run)
        await nursery.start(functools.partial(hypercorn_serve, create_app(served), config))
        url = f"ws://127.0.0.1:{port}/api/v1/events"
        async with open_websocket_url(url) as ws:
            assert json.loads(await ws.get_message())["kind"] == "stream.ready"
            await ws.send_message("x" * (WEBSOCKET_MAX_MESSAGE_BYTES + 1))
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.get_message()
            assert info.value.reason.code == 1009  # message too big
        served.request_stop()
        await served.stopped.wait()
        nursery.cancel_scope.cancel()
