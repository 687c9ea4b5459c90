"""What a node puts in one event stream message, against what the clients accept.

httpx-ws 0.10 closes a client's stream with 1009 when a message is over its
``max_message_size_bytes``, which is also how much it reads from the socket at
once. So the node bounds its ``lines=true`` messages by size as well as by count
(``LINES_MESSAGE_CHARS``) and no event carries a payload, and the clients accept
``MAX_MESSAGE_BYTES`` (1 MiB).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from httpx_ws import WebSocketDisconnect

from jobtrio.actors.node import Node
from jobtrio.api.events import LINES_MESSAGE_CHARS, LINES_PER_MESSAGE, line_messages
from jobtrio.cli import program
from jobtrio.cli.exits import EXIT_FAILURE
from jobtrio.client import AsyncClient, ConnectionFailed
from jobtrio.client.event_follow import MAX_MESSAGE_BYTES, EventFollow
from jobtrio.text import MAX_ERROR_CHARS
from tests.test_events import served  # noqa: F401 (the fixture: a node served here)
from tests.waiting import wait_until

#: Four UTF-8 bytes each: the largest an error of MAX_ERROR_CHARS characters can be.
WIDE = "\U0001f600"


def test_lines_are_joined_in_order_within_both_bounds() -> None:
    small = [json.dumps({"n": i}) for i in range(1_234)]
    wide = [json.dumps({"n": i, "error": "e" * 9_000}) for i in range(40)]
    huge = ["x" * (LINES_MESSAGE_CHARS + 5)]
    for events in (small, wide, huge + small[:3], small[:3] + huge + small[:3], []):
        messages = list(line_messages(events))
        assert [line for m in messages for line in m.split("\n")] == events
        for m in messages:
            count = m.count("\n") + 1
            assert count <= LINES_PER_MESSAGE
            assert len(m) <= LINES_MESSAGE_CHARS or count == 1  # one event goes out whole
        if events:
            # as full as the bounds allow: each message but the last could take no more
            for m, after in zip(messages, messages[1:], strict=False):
                first = after.split("\n")[0]
                full = m.count("\n") + 1 == LINES_PER_MESSAGE
                assert full or len(m) + 1 + len(first) > LINES_MESSAGE_CHARS
    assert [m.count("\n") + 1 for m in line_messages(small)] == [500, 500, 234]


def test_a_message_of_the_widest_events_fits_what_the_clients_accept() -> None:
    event = json.dumps(
        {"kind": "job.failed", "type": "t" * 200, "error": WIDE * MAX_ERROR_CHARS},
        ensure_ascii=False,
    )
    messages = list(line_messages([event] * 1_000))
    assert len(messages) > 1
    assert max(len(m.encode()) for m in messages) <= MAX_MESSAGE_BYTES


async def test_a_replay_of_failures_with_the_longest_errors_reaches_the_client(
    served: tuple[Node, str],  # noqa: F811 - the fixture
) -> None:
    """600 failures whose errors are 4,096 four-byte characters: 9.8 MB of events, which
    500 to a message made 8 MB messages the client closed with 1009."""
    node, url = served
    n = 600
    error = WIDE * MAX_ERROR_CHARS
    fields: dict[str, Any] = {"type": "wide", "status": "failed", "error": error}
    for i in range(n):
        node.events.publish("job.failed", job={"job_id": f"j{i:05d}", **fields})
    await wait_until(lambda: node.event_stream.recorded >= n, timeout=30)
    got: list[dict[str, Any]] = []
    async with AsyncClient(url) as client:
        with trio.fail_after(60):
            async with client.events(since="0-0", kind="job.failed", reconnect=False) as events:
                async for event in events:
                    if event["kind"] == "stream.gap":  # the node's stream starts at its start
                        continue
                    got.append(event)
                    if len(got) == n:
                        break
    assert [e["job_id"] for e in got] == [f"j{i:05d}" for i in range(n)]
    assert all(e["error"] == error for e in got)


async def test_a_saved_schedule_is_announced_without_its_payload(
    served: tuple[Node, str],  # noqa: F811 - the fixture
) -> None:
    node, url = served
    secret = {"token": "s" * 2_000}
    async with AsyncClient(url) as client:
        async with client.events(kind="schedule.saved", reconnect=False) as events:
            await node.put_schedule(
                {
                    "name": "nightly",
                    "every": "1h",
                    "job": {"type": "report", "priority": 4, "payload": secret},
                }
            )
            with trio.fail_after(10):
                event = await events.__anext__()
    schedule = event["schedule"]
    assert schedule["name"] == "nightly" and schedule["every"] == 3600.0
    assert schedule["job"] == {"type": "report", "priority": 4}
    assert "s" * 100 not in json.dumps(event)
    # the stored schedule keeps its payload
    stored = {s["name"]: s for s in await node.list_schedules()}
    assert stored["nightly"]["job"]["payload"] == secret


@pytest.mark.parametrize(
    ("failure", "hinted"),
    [
        (ConnectionFailed("cannot reach http://127.0.0.1:9: refused"), True),
        (ConnectionFailed("the event stream ... (close 1009)", code="message_too_big"), False),
        (ConnectionFailed("the event stream ... closed (1008)", code="stream_closed"), False),
    ],
)
def test_the_cli_asks_whether_a_node_runs_only_when_none_answered(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failure: ConnectionFailed,
    hinted: bool,
) -> None:
    def fail(**_: Any) -> None:
        raise failure

    monkeypatch.setattr(program.cli, "main", fail)
    assert program.main(["jobs", "watch"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert str(failure) in err
    assert ("is a node running there?" in err) is hinted


def test_the_client_names_the_stream_closing_with_a_code() -> None:
    follow = EventFollow(None, None, None, None, None, reconnect=True)
    with pytest.raises(ConnectionFailed) as info:
        follow.closed("http://node:8080", WebSocketDisconnect(1009, "Message too big"))
    assert info.value.code == "message_too_big"
    with pytest.raises(ConnectionFailed) as info:
        follow.closed("http://node:8080", WebSocketDisconnect(1008, "policy"))
    assert info.value.code == "stream_closed"
