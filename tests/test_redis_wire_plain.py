"""Review of 481cf26: ``_plain_command`` against ``_command`` of ``_arg``'s parts for
every kind of part and every refused one, and the shared wire's usability test
(``_usable``), which ``_request`` and ``_connect`` share."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from jobtrio.backends.redis import wire
from tests.test_redis_wire import conn, raw  # noqa: F401 (the fixtures)


class _Word(enum.StrEnum):
    INCR = "INCR"


class _Number(enum.IntEnum):
    ONE = 1


GOOD: list[tuple[Any, ...]] = [
    ("INCR", "k"),
    ("SET", "clé 漢字 🙂", "\u0000\r\n", b"\xff\xfe", b""),
    ("SET", "k", 0, -1, 2**64, -(2**80), 0.0, -0.0, 1e-300, 1e300, float("inf"), float("nan")),
    (b"GET", "k"),
    (),
]
BAD: list[Any] = [None, True, False, _Word.INCR, _Number.ONE, bytearray(b"x"),
                  memoryview(b"x"), ["k"], {"k": 1}, 1j, object()]  # fmt: skip


@pytest.mark.parametrize("parts", GOOD, ids=repr)
def test_a_plain_command_writes_what_the_general_writer_writes(parts: tuple[Any, ...]) -> None:
    assert wire._plain_command(parts) == wire._command(*[wire._arg(p) for p in parts])


@pytest.mark.parametrize("part", BAD, ids=lambda part: type(part).__name__)
def test_a_plain_command_refuses_what_the_general_writer_refuses(part: Any) -> None:
    """A subclass of str or int (an enum) and a bool are refused by both: ``_arg`` takes
    the exact kinds only, and ``_plain_command``'s ``str`` shortcut does too."""
    with pytest.raises(TypeError) as general:
        wire._command(*[wire._arg(p) for p in ("SET", "k", part)])
    with pytest.raises(TypeError) as plain:
        wire._plain_command(("SET", "k", part))
    assert str(plain.value) == str(general.value)


async def test_a_shared_wire_given_up_is_not_handed_out_again(conn, raw):  # noqa: F811
    """A wire given up while still the shared one (``fail`` from its own I/O path) is
    replaced at the next call, which succeeds on a new connection: not refused with the
    lost wire's error."""
    assert await conn.command("PING") in (b"PONG", "PONG", True)
    shared = conn._shared
    assert shared is not None
    shared.fail("given up by the test")
    assert conn._shared is shared  # still handed out but for the check
    assert await conn.command("ECHO", "again") == b"again"
    assert conn._shared is not shared and conn._shared is not None


async def test_a_busy_wire_past_the_interval_is_still_used(conn, raw, monkeypatch):  # noqa: F811
    """Calls in flight on it vouch for a wire whatever its idle time."""
    assert await conn.command("PING") in (b"PONG", "PONG", True)
    shared = conn._shared
    assert shared is not None
    monkeypatch.setattr(wire, "HEALTH_CHECK_INTERVAL", 0.0)
    assert not conn._usable(shared, shared.idle_since + 1.0)
    shared.calls.append(object())  # type: ignore[arg-type]
    try:
        assert conn._usable(shared, shared.idle_since + 1.0)
        shared.lost = "lost"
        assert not conn._usable(shared, shared.idle_since)
    finally:
        shared.calls.clear()
        shared.lost = None
