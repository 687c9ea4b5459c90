"""The event recorder gathers events that flow fast into fewer appends to the log.

Time moves only when the test moves it (trio's MockClock without autojump), so
each append counted here happened because the policy said so. Pinned: events
published one a scheduling round at 10,000 a second go in appends of many once
the rate is measured (before the linger: an append each); a lone event after a
quiet spell is appended at once; an append never waits past ``APPEND_LINGER``;
from ``node.stopping`` on, nothing waits.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from jobtrio.eventlog import MemoryEventLog
from jobtrio.events import EventBus
from jobtrio.eventstream import APPEND_LINGER, EventStream
from jobtrio.metrics import NodeMetrics


class CountingLog(MemoryEventLog):
    def __init__(self) -> None:
        super().__init__(100_000, lambda: 1_000.0)
        self.appends: list[int] = []

    async def append(self, bodies: Sequence[str]) -> None:
        self.appends.append(len(bodies))
        await super().append(bodies)


async def test_fast_events_share_appends_and_a_lone_one_goes_at_once(mock_clock):
    bus = EventBus("n1", trio.current_time)
    log = CountingLog()
    stream = EventStream(bus, log, NodeMetrics("n1"), trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(1000):  # 0.1 s at 10,000 events a second, one a scheduling round
            bus.publish("member.up", member=f"m{i}")
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.0001)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(APPEND_LINGER)  # the last linger's deadline
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 1000
        first_window = 500  # the rate is measured after 50 ms: an append each until then
        assert log.appends[:first_window] == [1] * first_window
        assert len(log.appends) < first_window + 50  # then about 20 events an append
        assert max(log.appends) <= APPEND_LINGER / 0.0001 + 1

        mock_clock.jump(1.0)  # a quiet second: the rate falls
        before = len(log.appends)
        bus.publish("member.up", member="lone")
        await trio.testing.wait_all_tasks_blocked()
        assert log.appends[before:] == [1]  # appended with no time passing
        assert stream.recorded == 1001
        nursery.cancel_scope.cancel()


async def test_a_stopping_node_appends_its_events_at_once(mock_clock):
    """From ``node.stopping`` on, events flowing fast are appended without lingering: the
    node cancels the recorder once stopped, and held events would be lost."""
    bus = EventBus("n1", trio.current_time)
    log = CountingLog()
    stream = EventStream(bus, log, NodeMetrics("n1"), trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(600):  # past the first rate window at 10,000 events a second
            bus.publish("member.up", member=f"m{i}")
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.0001)
        mock_clock.jump(APPEND_LINGER)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 600
        bus.publish("member.up", member="held")  # events still flow fast: it waits
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 600
        bus.publish("node.stopping")
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 602  # both, with no time passing
        bus.publish("member.up", member="last")
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 603
        nursery.cancel_scope.cancel()
