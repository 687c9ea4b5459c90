"""The websocket peer transport on loopback: delivery, authentication, bad frames."""

from __future__ import annotations

import json
import time

import pytest
import trio
from trio_websocket import open_websocket_url

from jobtrio.cluster.transport import (
    PROTOCOL_VERSION,
    TransportError,
    WebsocketTransport,
    sign_hello,
    verify_hello,
)
from tests.waiting import wait_until


async def start(nursery: trio.Nursery, node_id: str, secret: str = "s3cret") -> WebsocketTransport:
    t = WebsocketTransport(node_id, "", secret, host="127.0.0.1", port=0)
    port = await nursery.start(t.run)
    t.advertise = f"127.0.0.1:{port}"
    return t


async def test_messages_flow_both_ways_and_addresses_are_learned():
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a")
        b = await start(nursery, "b")
        a.set_address("b", b.advertise)
        a.send("b", {"kind": "ping", "n": 1})
        got = await b.receive()
        assert got.sender == "a" and got.message == {"kind": "ping", "n": 1}
        # b learned a's address from the signed hello and can answer by id
        b.send("a", {"kind": "ack", "n": 1})
        back = await a.receive()
        assert back.sender == "b" and back.message["kind"] == "ack"
        # send_to_address works before the id is known
        c = await start(nursery, "c")
        c.send_to_address(a.advertise, {"kind": "join"})
        assert (await a.receive()).sender == "c"
        nursery.cancel_scope.cancel()


async def test_wrong_secret_is_refused_and_the_node_lives_on():
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a", secret="right")
        intruder = await start(nursery, "evil", secret="wrong")
        intruder.send_to_address(a.advertise, {"kind": "coordinator", "epoch": 999})
        await wait_until(lambda: a.rejected >= 1, timeout=5)
        friend = await start(nursery, "friend", secret="right")
        friend.send_to_address(a.advertise, {"kind": "hello-again"})
        got = await a.receive()
        assert got.sender == "friend"
        nursery.cancel_scope.cancel()


async def test_malformed_frames_are_dropped_with_a_reason():
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a")
        url = f"ws://{a.advertise}/peer"
        async with open_websocket_url(url) as ws:
            token = sign_hello("s3cret", "raw", "", time.time())
            await ws.send_message(
                json.dumps({"v": PROTOCOL_VERSION, "from": "raw", "msg": {"hello": token}})
            )
            await ws.send_message("not json at all")
            await ws.send_message(json.dumps([1, 2, 3]))
            await ws.send_message(json.dumps({"v": 99, "from": "raw", "msg": {}}))
            await ws.send_message(
                json.dumps({"v": PROTOCOL_VERSION, "from": "someone-else", "msg": {}})
            )
            # json.loads reads a lone surrogate's escape: no text, and it reached the
            # node's events (a member's id) where Redis's UTF-8 wire could not carry it
            await ws.send_message(
                json.dumps({"v": PROTOCOL_VERSION, "from": "raw", "msg": {"m": "x\ud800"}})
            )
            await ws.send_message(  # a pair's escapes are valid text
                json.dumps({"v": PROTOCOL_VERSION, "from": "raw", "msg": {"ok": "\U0001f600"}})
            )
            got = await a.receive()
        assert got.sender == "raw" and got.message == {"ok": "\U0001f600"}
        assert a.rejected == 5
        nursery.cancel_scope.cancel()


async def test_unreachable_peer_does_not_block_others():
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a")
        b = await start(nursery, "b")
        a.set_address("ghost", "127.0.0.1:1")
        for i in range(5000):
            a.send("ghost", {"n": i})  # fills and overflows its bounded queue
        a.set_address("b", b.advertise)
        a.send("b", {"kind": "still-works"})
        assert (await b.receive()).message == {"kind": "still-works"}
        assert a.dropped > 0
        nursery.cancel_scope.cancel()


def test_a_peer_whose_clock_runs_a_little_ahead_is_accepted():
    # iat is whole seconds: a peer 2 s ahead always signs an iat in our future
    ahead = sign_hello("s3cret", "fast-clock", "127.0.0.1:1", time.time() + 2.0)
    assert verify_hello("s3cret", ahead) == ("fast-clock", "127.0.0.1:1")
    # far apart is still refused, with the hint
    stale = sign_hello("s3cret", "slow-clock", "127.0.0.1:1", time.time() - 120.0)
    with pytest.raises(TransportError, match="clocks far apart"):
        verify_hello("s3cret", stale)


async def test_forgetting_an_unreachable_peer_stops_dialing_it():
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a")
        assert a._nursery is not None
        baseline = len(a._nursery.child_tasks)
        a.set_address("gone", "127.0.0.1:1")
        a.send("gone", {"kind": "ping"})
        assert len(a._nursery.child_tasks) == baseline + 1  # its dialing task
        # it left the cluster and will never answer: no task may redial it forever
        a.forget("gone")
        await wait_until(lambda: len(a._nursery.child_tasks) == baseline, timeout=5)
        nursery.cancel_scope.cancel()
