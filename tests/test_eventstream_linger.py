"""The event recorder gathers events that flow fast into fewer appends to the log, and
appends the few with the node's next Broker call.

Time moves only when the test moves it (trio's MockClock without autojump), so
each append counted here happened because the policy said so. Pinned: events
published one a scheduling round at 10,000 a second go in appends of many once
the rate is measured (before, they wait for company: at most
``APPEND_COMPANY_WAIT`` each); a lone event after a quiet spell is appended in
the round the node's next Broker call goes out (``EventBus.company``), or after
``APPEND_COMPANY_WAIT`` without one; an append never waits past
``APPEND_LINGER`` while events flow; from ``node.stopping`` on, nothing waits.
While it holds events for an append, the recorder is not woken by each
``publish_jobs`` (a drain's deal of one job): the job events wait for the end of
its wait, ``APPEND_TARGET`` of them, or a plain event, and keep their order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import trio
import trio.testing

from jobtrio.eventlog import MemoryEventLog
from jobtrio.events import EventBus
from jobtrio.eventstream import (
    APPEND_COMPANY_WAIT,
    APPEND_LINGER,
    APPEND_TARGET,
    STOP_APPEND_TIMEOUT,
    EventStream,
)
from jobtrio.jobs import Job
from jobtrio.metrics import NodeMetrics


class CountingLog(MemoryEventLog):
    def __init__(self) -> None:
        super().__init__(100_000, lambda: 1_000.0)
        self.appends: list[int] = []

    async def append(self, bodies: Sequence[str]) -> None:
        self.appends.append(len(bodies))
        await super().append(bodies)


class Steps(trio.abc.Instrument):
    """Task steps of every task but the test's own (the recorder's wake-ups here)."""

    def __init__(self, test: trio.lowlevel.Task) -> None:
        self.test = test
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.test:
            self.steps += 1


def _recorder(log: MemoryEventLog) -> tuple[EventBus, EventStream]:
    """A node's bus and its recorder of events into ``log``."""
    bus = EventBus("n1", trio.current_time)
    return bus, EventStream(bus, log, NodeMetrics("n1"), trio.current_time)


def _job(i: int) -> Job:
    return Job(id=f"J{i:025d}", type="t", created_at=1.0)


async def test_job_events_flowing_one_a_round_do_not_wake_the_recorder_each(mock_clock):
    """A drain's deals of one job each, with the finishes' outcomes between them: the
    recorder wakes about once an append, not once a ``publish_jobs``; every event is
    recorded, each job's started before its completed, in the order published."""
    log = CountingLog()
    bus, stream = _recorder(log)
    steps = Steps(trio.lowlevel.current_task())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        jobs = [_job(i) for i in range(2000)]
        published: list[tuple[str, str]] = []
        for i, job in enumerate(jobs):  # 0.2 s at 10,000 jobs a second, one a round
            if i == 1000:  # the rate is measured long since: the recorder lingers
                trio.lowlevel.add_instrument(steps)
                appends_before = len(log.appends)
            bus.publish_jobs("job.started", [job])
            published.append(("job.started", job.id))
            if i % 4 == 3:  # a finish of four outcomes
                done = jobs[i - 3 : i + 1]
                bus.publish_jobs("job.completed", done)
                published += [("job.completed", j.id) for j in done]
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.0001)
        trio.lowlevel.remove_instrument(steps)
        appends = len(log.appends) - appends_before
        mock_clock.jump(APPEND_LINGER)  # the last linger's deadline
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 4000
        # 1,000 publish_jobs of job.started and 250 of job.completed meanwhile: the
        # recorder woke for each before (1,250 steps and more), now for its appends
        assert 0 < appends <= 1000 * 0.0001 / APPEND_LINGER + 2
        assert steps.steps <= 3 * appends + 3, (steps.steps, appends)
        nursery.cancel_scope.cancel()
    entries = await log.read_after((0, 0), 10_000)
    bodies = [json.loads(e.body) for e in entries]
    assert [(b["kind"], b["job_id"]) for b in bodies] == published


async def test_job_events_held_are_appended_by_the_waits_end_or_at_the_target(mock_clock):
    """Job events published while the recorder waits for company, or lingers, do not end
    its wait, but are appended when it ends: ``APPEND_COMPANY_WAIT`` (or
    ``APPEND_LINGER``) after the first at most; ``APPEND_TARGET`` of them end it at once."""
    log = CountingLog()
    bus, stream = _recorder(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(1.0)  # quiet: the recorder waits for company
        bus.publish_jobs("job.started", [_job(0)])  # wakes it: it starts its wait
        await trio.testing.wait_all_tasks_blocked()
        for i in range(1, 4):
            mock_clock.jump(APPEND_COMPANY_WAIT / 4)
            bus.publish_jobs("job.started", [_job(i)])
            await trio.testing.wait_all_tasks_blocked()
        assert log.appends == []
        mock_clock.jump(APPEND_COMPANY_WAIT / 4)  # the wait's end: all four, no more time
        await trio.testing.wait_all_tasks_blocked()
        assert log.appends == [4]

        mock_clock.jump(1.0)
        bus.publish_jobs("job.started", [_job(10)])
        await trio.testing.wait_all_tasks_blocked()
        bus.publish_jobs("job.completed", [_job(i) for i in range(APPEND_TARGET - 1)])
        await trio.testing.wait_all_tasks_blocked()
        assert log.appends == [4, APPEND_TARGET]  # no time passed

        for i in range(600):  # flowing now: the recorder lingers
            bus.publish_jobs("job.started", [_job(i)])
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.0001)
        mock_clock.jump(APPEND_LINGER)
        await trio.testing.wait_all_tasks_blocked()
        before = stream.recorded
        bus.publish_jobs("job.completed", [_job(0)])  # the recorder was idle: it lingers
        await trio.testing.wait_all_tasks_blocked()
        bus.publish_jobs("job.completed", [_job(1)])
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(APPEND_LINGER * 0.99)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == before
        mock_clock.jump(APPEND_LINGER * 0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == before + 2
        nursery.cancel_scope.cancel()


async def test_fast_events_share_appends_and_a_lone_one_waits_for_company(mock_clock):
    log = CountingLog()
    bus, stream = _recorder(log)
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
        # the rate is measured after 50 ms: until then events wait for company (none
        # comes here: no Broker call), then about 20 an append (the linger)
        company = int(APPEND_COMPANY_WAIT / 0.0001) + 2
        first_window = 500 // company
        assert max(log.appends[:first_window]) <= company
        assert len(log.appends) < first_window + 50
        assert max(log.appends[first_window + 1 :]) <= APPEND_LINGER / 0.0001 + 1

        mock_clock.jump(1.0)  # a quiet second: the rate falls
        before = len(log.appends)
        bus.publish("member.up", member="lone")
        await trio.testing.wait_all_tasks_blocked()
        assert log.appends[before:] == []  # it waits for company
        assert bus.company_wanted
        bus.company()  # a Broker call of the node goes out in the next round
        await trio.testing.wait_all_tasks_blocked()
        assert log.appends[before:] == [1]  # appended with no time passing
        assert stream.recorded == 1001 and not bus.company_wanted

        bus.publish("member.up", member="alone")  # no Broker call comes
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(APPEND_COMPANY_WAIT * 0.99)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 1001
        mock_clock.jump(APPEND_COMPANY_WAIT * 0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.recorded == 1002 and not bus.company_wanted
        nursery.cancel_scope.cancel()


async def test_a_stopping_node_appends_its_events_at_once(mock_clock):
    """From ``node.stopping`` on, events flowing fast are appended without lingering: the
    node cancels the recorder once stopped, and held events would be lost."""
    log = CountingLog()
    bus, stream = _recorder(log)
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


async def test_a_finishing_jobs_events_go_with_the_next_finish(mock_clock):
    # at a low rate, a job's job.completed (published once its finish was answered) waits
    # for the node's next Broker call: the next job's finish, made in the same scheduling
    # round as the append, so that on Redis both share one send (here: the same batch of
    # the scheduler). Time stands still: nothing waits for APPEND_COMPANY_WAIT
    from jobtrio.backends.memory import MemoryBroker
    from tests.test_node import running_node, terminal

    batch = [0]

    class Batches(trio.abc.Instrument):
        def after_io_wait(self, timeout: float) -> None:
            batch[0] += 1

    calls: list[tuple[str, int, list[str]]] = []

    class LoggedBroker(MemoryBroker):
        async def finish(self, items, now):
            calls.append(("finish", batch[0], [item.job_id for item in items]))
            return await super().finish(items, now)

    instrument = Batches()
    trio.lowlevel.add_instrument(instrument)
    try:
        async with running_node(broker=LoggedBroker()) as node:
            log = node.event_stream.log
            assert log is not None
            append = log.append

            async def logged_append(bodies):
                calls.append(("append", batch[0], list(bodies)))
                await append(bodies)

            log.append = logged_append  # type: ignore[method-assign]
            await trio.testing.wait_all_tasks_blocked()
            first = await node.submit({"type": "noop"})
            await trio.testing.wait_all_tasks_blocked()
            assert (await node.get(first.id)).status == "completed"  # type: ignore[union-attr]
            second = await node.submit({"type": "noop"})
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.autojump_threshold = 0  # let the node's stop pass
            assert (await terminal(node, second.id)).status == "completed"
    finally:
        trio.lowlevel.remove_instrument(instrument)
    [first_finish] = [c for c in calls if c[0] == "finish" and first.id in c[2]]
    [second_finish] = [c for c in calls if c[0] == "finish" and second.id in c[2]]
    [completed] = [
        c
        for c in calls
        if c[0] == "append" and any('"job.completed"' in b and first.id in b for b in c[2])
    ]
    assert completed[1] > first_finish[1]
    assert completed[1] == second_finish[1], calls


class GatedLog(CountingLog):
    """Appends wait at ``gate`` while it is set to an unset event."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None
        #: Set when an append reaches the gate.
        self.at_gate = trio.Event()

    async def append(self, bodies: Sequence[str]) -> None:
        if self.gate is not None:
            self.at_gate.set()
            await self.gate.wait()
        await super().append(bodies)


async def test_a_stopping_node_loses_no_event_to_its_cancel():
    """From ``node.stopping`` on, the append in flight when the node cancels the recorder
    (the node's last step of its stop) is finished, and the events published before the
    cancel that were not in it yet are appended then: none is lost."""
    log = GatedLog()
    bus, stream = _recorder(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        log.gate = trio.Event()
        bus.publish("node.stopping")
        await trio.testing.wait_all_tasks_blocked()  # its append waits at the gate
        assert log.appends == []
        bus.publish_jobs("job.completed", [_job(0)])
        bus.publish("member.down", member="n2", left=True)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # the node's stop
        log.gate.set()
    assert stream.recorded == 3
    entries = await log.read_after((0, 0), 10)
    kinds = [json.loads(e.body)["kind"] for e in entries]
    assert kinds == ["node.stopping", "job.completed", "member.down"]


async def test_a_stopping_event_behind_an_append_in_flight_is_not_lost_to_the_cancel(
    mock_clock,
):
    """``node.stopping`` published while an append that began before it is in flight
    (unshielded: the node was not stopping yet), then the stop's cancel before the
    recorder took it: the cancel's handler takes what waits first, so it still knows
    the node is stopping and appends the lot (it skipped them, ``_stopping`` unset)."""
    mock_clock.autojump_threshold = 0  # the lone event's wait for company runs out
    log = GatedLog()
    bus, stream = _recorder(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        log.gate = trio.Event()
        bus.publish("member.up", member="n2", address="a")
        with trio.fail_after(1):
            await log.at_gate.wait()  # its append (after its wait for company) is in flight
        assert log.appends == []
        bus.publish("node.stopping")
        bus.publish_jobs("job.completed", [_job(0)])
        nursery.cancel_scope.cancel()  # the node's stop, before the recorder ran again
        log.gate = None  # the log answers the appends of the stop
    entries = await log.read_after((0, 0), 10)
    kinds = [json.loads(e.body)["kind"] for e in entries]
    assert kinds == ["member.up", "node.stopping", "job.completed"]


async def test_a_stop_waits_no_longer_than_its_bound_for_a_log_that_hangs(mock_clock):
    """A log that hangs at stop holds the cancel up ``STOP_APPEND_TIMEOUT`` at most."""
    mock_clock.autojump_threshold = 0
    log = GatedLog()
    bus, stream = _recorder(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        log.gate = trio.Event()  # never set
        bus.publish("node.stopping")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start <= STOP_APPEND_TIMEOUT
    assert stream.recorded == 0 and not stream.log_healthy


class SlowLog(CountingLog):
    """Every append answers after ``delay`` seconds (a log that is slow, not down)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def append(self, bodies: Sequence[str]) -> None:
        await trio.sleep(self.delay)
        await super().append(bodies)


async def test_a_stop_is_not_held_for_each_batch_left_by_a_slow_log(mock_clock):
    """A slow log and several batches pending when the stop's cancel comes: the append
    in flight is finished and what is left gets ``STOP_APPEND_TIMEOUT`` in all, not a
    fresh bound for each batch (the stop held for 0.6 s a batch, without end)."""
    mock_clock.autojump_threshold = 0
    log = SlowLog(0.6 * STOP_APPEND_TIMEOUT)
    bus, stream = _recorder(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.testing.wait_all_tasks_blocked()
        bus.publish("node.stopping")
        await trio.testing.wait_all_tasks_blocked()  # its append is in flight
        for i in range(5):
            bus.publish_jobs("job.completed", [_job(1000 * i + j) for j in range(1000)])
        start = trio.current_time()
        nursery.cancel_scope.cancel()  # the node's stop
    assert trio.current_time() - start <= 2 * STOP_APPEND_TIMEOUT
    assert log.appends[0] == 1 and stream.recorded >= 1001  # the rest had its second
