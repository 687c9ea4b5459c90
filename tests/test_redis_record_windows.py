"""created_at windows over records whose ids tell their creation time, at the edges.

A record whose id starts with its created_at's milliseconds is not in the created_at
index (``layout.ID_ALPHABET``): a window finds it as the range of ids made from
``floor(after * 1000)`` up to ``floor(before * 1000)`` inclusive. The edges that range
must keep are the millisecond a window starts and the one it ends in: a record created
in the same millisecond as ``before``, and before it, is inside the window (a range
ending below that millisecond's ids would leave it out), and one created in the same
millisecond as ``after``, and after it, too.
"""

from __future__ import annotations

import pytest

from jobtrio.backends.base import JobQuery
from jobtrio.backends.redis import RedisStore
from jobtrio.jobs import IdGenerator, JobStatus
from jobtrio.submission import validate_submission
from tests.redis_backends import records_pair

#: A millisecond's start, so that the offsets below stay inside their millisecond.
NOW = 1_700_000_000.0


kept = pytest.fixture(records_pair, name="kept")


async def _listed(store: RedisStore, **query: object) -> list[str]:
    """Every id a query lists, one record a page (every cursor crossed)."""
    out: list[str] = []
    cursor = None
    while True:
        page = await store.query(JobQuery(limit=1, cursor=cursor, **query))  # type: ignore[arg-type]
        out += [job.id for job in page.jobs]
        if page.next_cursor is None or len(out) > 50:
            return out
        cursor = page.next_cursor


async def test_a_window_keeps_the_records_of_its_first_and_last_millisecond(kept) -> None:
    broker, store = kept
    gen = IdGenerator()
    # created 0.2 ms into their millisecond (0.0002 s), ids made at that time
    created = [NOW + k * 0.005 + 0.0002 for k in range(4)]
    jobs = [validate_submission({"type": "noop"}, c, ids=gen) for c in created]
    assert all(j.created_at == c for j, c in zip(jobs, created, strict=True))
    await broker.enqueue(jobs, NOW + 1)
    windows = []
    for c in created:
        windows += [
            (c - 0.0001, c + 0.0001),  # the record's millisecond alone
            (None, c + 0.0001),  # ends in its millisecond, after it
            (c, None),  # starts exactly at it
            (c - 0.0001, None),  # starts in its millisecond, before it
            (None, c),  # ends exactly at it: not in
            (c + 0.0001, c + 0.0002),  # its millisecond, after it: not in
        ]
    windows.append((created[1] - 0.0001, created[2] + 0.0001))
    for after, before in windows:
        want = sorted(
            (
                j.id
                for j in jobs
                if (after is None or j.created_at >= after)
                and (before is None or j.created_at < before)
            ),
            reverse=True,
        )
        assert await _listed(store, created_after=after, created_before=before) == want, (
            after,
            before,
        )
        pending = frozenset({JobStatus.PENDING})
        assert (
            await _listed(store, created_after=after, created_before=before, statuses=pending)
            == want
        ), (after, before)


async def test_a_status_filter_refuses_the_other_statuses_the_index_it_reads_holds(kept) -> None:
    """Two reads list records of every status under a status filter, and the filter then
    rests on the status each record's m holds (``layout.RETIRED_FIELDS``): a created_at
    window reads the created_at index (records whose id does not tell their time, of any
    status), and a type filter reads the type's index when it is the smaller one."""
    broker, store = kept
    gen = IdGenerator()
    jobs = []
    for k in range(6):
        job = validate_submission({"type": "noop"}, NOW + k * 0.01, ids=gen)
        job.id = f"custom-{k}"  # an id that does not tell its created_at: indexed by it
        jobs.append(job)
    jobs += [validate_submission({"type": "bulk"}, NOW + 1, ids=gen) for _ in range(12)]
    await broker.enqueue(jobs, NOW + 2)
    # custom-0..2 running: claimed first (FIFO), none of the bulk type
    leases = await broker.claim("n1", 3, 30, NOW + 3)
    running = sorted((lease.job.id for lease in leases), reverse=True)
    assert running == ["custom-2", "custom-1", "custom-0"]
    customs = sorted((j.id for j in jobs[:6]), reverse=True)
    pending = [i for i in customs if i not in running]
    windows = [(NOW - 1, NOW + 0.5), (NOW + 0.005, NOW + 0.045)]
    for after, before in windows:
        inside = {j.id for j in jobs[:6] if j.created_at >= after and j.created_at < before}
        for status, ids in ((JobStatus.PENDING, pending), (JobStatus.RUNNING, running)):
            listed = await _listed(
                store, created_after=after, created_before=before, statuses=frozenset({status})
            )
            assert listed == [i for i in ids if i in inside], (status, after, before)
    # the noop type's index (6) is smaller than the pending index (15)
    for status, ids in ((JobStatus.PENDING, pending), (JobStatus.RUNNING, running)):
        assert await _listed(store, type="noop", statuses=frozenset({status})) == ids, status
