"""What only shows over a real HTTP connection (hypercorn), not the Quart test client."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.test_api import MAX_PAYLOAD, make_node
from tests.test_client import serve_node


@pytest.mark.parametrize(
    "size",
    [
        MAX_PAYLOAD + 100_000,  # over the route's limit, refused from Content-Length
        40 * 1024 * 1024,  # over Quart's MAX_CONTENT_LENGTH as well
    ],
)
async def test_a_refused_large_body_closes_the_connection_and_the_next_request_works(
    size: int,
) -> None:
    """A 413 sent before the body is read must not leave that body on a kept-alive connection."""
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            big = {"type": "noop", "payload": {"x": "a" * size}}
            for route in ("/api/v1/jobs", "/api/v1/schedules"):
                body = {"name": "x", "every": 60, "job": big} if "schedules" in route else big
                response = await client.post(route, json=body)
                assert response.status_code == 413
                assert response.json()["error"]["code"] == "payload_too_large"
                assert response.headers["Connection"] == "close"
                with trio.fail_after(5):
                    assert (await client.get("/health")).status_code == 200
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()
