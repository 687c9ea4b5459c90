"""The shared backoff: growth, ceiling, reset and deadlines."""

from __future__ import annotations

from jobtrio.backoff import Backoff


def test_delays_grow_by_the_factor_up_to_the_ceiling() -> None:
    backoff = Backoff(0.05, 0.3)
    assert [backoff.next() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(1.0, 10.0, factor=1.5)
    backoff.next()
    backoff.next()
    backoff.reset()
    assert backoff.next() == 1.0
    assert backoff.next() == 1.5


def test_next_within_is_cut_to_the_deadline_and_ends_there() -> None:
    backoff = Backoff(1.0, 4.0)
    assert backoff.next_within(None, 100.0) == 1.0
    assert backoff.next_within(10.0, 9.5) == 0.5  # 2.0 due, 0.5 left
    assert backoff.next_within(10.0, 10.0) is None
