"""Compact JSON text from the stdlib's C encoder, without its per-call set-up; and when
orjson reads JSON exactly as ``json.loads`` does.

``json.JSONEncoder.encode`` builds a new C encoder on every call, which is
most of the cost of a small value (1.3 us of 1.3 us for ``{"source":
"bench"}``; 0.8 us without it): the job path encodes a payload and a few
small values per job. ``compact_encoder`` returns the very function
``JSONEncoder(separators=(",", ":"), ...).encode`` is, minus that set-up:
the same text, the same errors (a circular reference, NaN when refused, a
type JSON has no word for), because it is the same C encoder with the same
arguments, a fresh circular-reference memo per call.

orjson reads JSON three to four times faster than ``json.loads`` and refuses
what it cannot read the same way (NaN, Infinity, 1e400, a lone surrogate
escape), except one thing: an integer past 64 bits, which it reads as a float
(``2**70 + 1`` loses its last digits). ``orjson_exact`` tells the texts
without such an integer: every one is a run of 19 digits or more.

``request_body`` writes a request's JSON by orjson (a batch of 1,000 jobs 3.7 -> 0.2 us
a job) when the stdlib would have written the same values, else says to leave it to
the stdlib (httpx's ``json=``): see its docstring for what differs.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any

import orjson


def compact_encoder(
    *, ensure_ascii: bool = True, allow_nan: bool = True, check_circular: bool = True
) -> Callable[[Any], str]:
    """``json.JSONEncoder(separators=(",", ":"), ensure_ascii=..., allow_nan=...,
    check_circular=...).encode``.

    Without ``check_circular`` the C encoder keeps no memo, so one serves every call
    (0.8 -> 0.4 us for a small object): a value that holds itself then fails as the
    stdlib's does without the check, with a ``RecursionError``."""
    reference = json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=ensure_ascii,
        allow_nan=allow_nan,
        check_circular=check_circular,
    )
    make = json.encoder.c_make_encoder
    if make is None:  # a Python without the C accelerator: the reference itself
        return reference.encode
    encoder = json.encoder
    string = encoder.encode_basestring_ascii if ensure_ascii else encoder.encode_basestring
    default = reference.default
    join = "".join

    if not check_circular:
        shared = make(None, default, string, None, ":", ",", False, False, allow_nan)

        def encode_unchecked(value: Any) -> str:
            if type(value) is str:
                return string(value)  # type: ignore[no-any-return]
            return join(shared(value, 0))

        return encode_unchecked

    def encode(value: Any) -> str:
        if type(value) is str:
            return string(value)  # type: ignore[no-any-return]
        return join(make({}, default, string, None, ":", ",", False, False, allow_nan)(value, 0))

    return encode


#: What a float's text can grow by when written again: ``repr`` writes at most 24
#: characters (``-2.2250738585072014e-308``), and a JSON float takes at least 3 (``1e5``).
_FLOAT_LONGEST, _FLOAT_SHORTEST = 24, 3


def reencoded_size_bound(text: bytes, enough: int = 0) -> int:
    """At most how many UTF-8 bytes the compact stdlib encoding (``ensure_ascii=False``)
    of any value orjson read from ``text`` takes: of a batch's payloads, each, so the size
    check need not write them again when this is within the limit. The bound by the
    text's length alone (8 times it) when that is at most ``enough``, else by counting
    (a pass over the text for each of three characters: 1.3k instructions a job of a
    batch of noop jobs).

    Why it holds: a value's text in ``text`` is written again no longer, but for floats.
    Whitespace goes; an integer orjson read exactly (``orjson_exact``) is written with
    the same digits or fewer (``-0``); a string's characters are written as they came or
    shorter (an escape such as ``\\u00e9`` or ``\\/`` becomes the character), since what
    the encoder escapes (a quote, a backslash, a control character) came escaped, as
    long or longer. A float is written by ``repr``, 8 times as long at most and 21
    characters longer, and each float's text holds a ``.``, an ``e`` or an ``E``."""
    coarse = len(text) * (_FLOAT_LONGEST // _FLOAT_SHORTEST)
    if coarse <= enough:
        return coarse
    floats = text.count(b".") + text.count(b"e") + text.count(b"E")
    return len(text) + (_FLOAT_LONGEST - _FLOAT_SHORTEST) * floats


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def decode_error_text(exc: json.JSONDecodeError) -> str:
    """What is wrong with a text and where, for a message that names the source first.

    Some of the stdlib's messages end in "at" already ("Invalid control character at"),
    which read "at at line" when the place was appended as it stands.
    """
    return f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"


def orjson_exact(data: bytes) -> bool:
    """Whether no run of 19 digits in ``data`` could be an integer orjson reads as a float
    (one C pass: 20 us for a claim reply of 70 jobs). A run inside a string or a long
    float gives a false alarm only, which costs the caller the stdlib's reading."""
    return _LONG_RUN not in data.translate(_DIGITS_AS_ZERO)


_BODY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _refuse(value: Any) -> Any:
    raise TypeError(f"left to the stdlib encoder: {type(value).__name__}")


def request_body(value: Any) -> bytes | None:
    """``value`` as a JSON request body by orjson, or None where the stdlib must write it
    (httpx's ``json=``, which writes it, or refuses it, as before).

    None for anything orjson writes otherwise or refuses: what it leaves to ``default``
    (datetimes, dataclasses, subclasses of str, int, dict and list, and every type it
    does not know, which the stdlib refuses or writes its own way); an integer past 64
    bits, a key that is not a str, a lone surrogate, a value that holds itself or nests
    past 254 levels (orjson refuses them; the stdlib writes or refuses them as before);
    and any text holding ``null``, because orjson writes a NaN or an infinity as
    ``null`` where the stdlib (as httpx calls it) refuses them: a body with a real null
    (or the word inside a string) costs the stdlib's writing, never a NaN sent as null.
    Left as orjson writes them: a ``uuid.UUID`` (its text) and a plain ``enum.Enum``
    member (its value), which the stdlib refused with a ``TypeError``. Floats come out
    in orjson's shortest form (``1e16`` for ``1e+16``): the same numbers to any reader."""
    try:
        body = orjson.dumps(value, default=_refuse, option=_BODY_OPTIONS)
    except TypeError:
        return None
    return None if b"null" in body else body
