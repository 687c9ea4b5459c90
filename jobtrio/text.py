"""Untrusted text: what a name may contain, and how to show a value safely.

Names (job types, schedule names, idempotency keys) end up in terminals,
logs and HTML. A control character or a terminal escape sequence in one can
rewrite what an operator sees (``ESC ]0;`` sets a window title, ``ESC [2J``
clears the screen, U+202E turns text around), so names refuse them outright.
Text that may legitimately hold them (a job's error, a payload) is escaped
where it is shown instead: ``printable`` makes every such character visible
as ``\\xNN``/``\\uNNNN``, and is idempotent, so escaping twice changes nothing.

``clip`` cuts a value echoed in an error message: a client that sends a
300-digit number or a megabyte string gets a message of readable size
naming the field, not its own input back.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: Longest value (its repr) an error message quotes before cutting it.
CLIP_LENGTH = 60

#: Most characters of a job's error kept: an exception's type and message.
MAX_ERROR_CHARS = 4096

#: C0 and C1 controls, DEL, line/paragraph separators and the bidirectional
#: and zero-width format characters a terminal or a browser acts on.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def unsafe_character(text: str) -> str | None:
    """The first control or format character of ``text`` as ``U+XXXX (NAME)``, or None.

    A lone UTF-16 surrogate (Cs) counts: it is no text at all, and a job type, queue
    name or idempotency key holding one, submitted from Python, failed in the
    Broker's UTF-8 encoding (Redis, SQLite) instead of being refused naming the field.
    """
    match = UNSAFE.search(text)
    if match is None:
        if text.isascii():  # UNSAFE holds every ASCII control: no category to look up
            return None
        for char in text:
            if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
                break
        else:
            return None
    else:
        char = match.group()
    surrogate = "\ud800" <= char <= "\udfff"
    name = unicodedata.name(char, "lone UTF-16 surrogate" if surrogate else "control character")
    return f"U+{ord(char):04X} ({name})"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with every control and format character shown as an escape.

    Newlines (and tabs) are kept when ``keep_newlines``: a multi-line error
    stays readable, and neither can move the cursor anywhere harmful.
    """
    if keep_newlines:
        return UNSAFE.sub(lambda m: m.group() if m.group() in "\n\t" else _escape(m), text)
    return UNSAFE.sub(_escape, text)


def clip(value: Any, limit: int = CLIP_LENGTH) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        # repr of a huge int is itself slow (quadratic): count its digits approximately
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits
        return "an integer too long to show"
    if len(text) <= limit:
        return printable(text)
    return f"{printable(text[: limit - 1])}… ({len(text)} characters)"


def cut(text: str, limit: int = CLIP_LENGTH) -> str:
    """``text`` itself (escaped, unquoted) cut to ``limit`` characters."""
    if len(text) <= limit:
        return printable(text)
    return f"{printable(text[: limit - 1])}… ({len(text)} characters)"


def error_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """A processor's error as a job keeps it: valid Unicode, at most ``limit`` characters.

    The error is stored with the job and each of its attempts, carried by the
    job's events and read back by every client. An exception message is the
    processor's own text: one of megabytes was stored whole on every attempt
    and in every event (a 5 MB message, three attempts: 15 MB a job, and the
    Redis event stream keeps up to ``EVENT_STREAM_MAXLEN`` events); one holding
    a lone UTF-16 surrogate cannot be encoded as UTF-8, which Redis's wire,
    BSON and the event stream all need: the node's event stream crashed on it
    at every restart. So the text is cut, saying how much was left out, and a
    lone surrogate becomes U+FFFD.
    """
    if len(text) > limit:
        # the whole within limit, so cutting twice changes nothing
        keep = limit - len(f"… ({len(text)} more characters)")
        text = f"{text[:keep]}… ({len(text) - keep} more characters)"
    if not text.isascii():
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
