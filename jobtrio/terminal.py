"""A rich Console that never writes a control character it was given as text.

The CLI prints what a node sends (job types, errors, schedule names, event
messages). Names refuse control characters at submission, but a job's error
is whatever a processor raised, and a node may be hostile: an ``ESC``
sequence in it could clear the operator's screen, retitle the window or
hide a line. ``SafeConsole`` escapes every control and format character in
the text it renders (``text.printable``: ``\\x1b`` shows as the four
characters ``\\x1b``); the styles rich itself adds are not text, so colours
and tables still work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from .text import UNSAFE, printable


class SafeConsole(Console):
    """Strings are escaped before rich measures them (table columns fit the escaped
    text); anything else is escaped segment by segment as it is rendered (a net
    for ``Text`` objects made elsewhere, which may then be cut to their measured width)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not segment.text:
                yield segment  # rich's own cursor moves, not text from anywhere
            else:
                yield Segment(printable(segment.text), segment.style, segment.control)


def safe_json(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` that also escapes DEL, C1 controls and format characters as
    ``\\uXXXX`` (JSON escapes only C0 controls), so printing it moves no cursor.

    Newlines and tabs in the output are the indentation's (inside strings JSON
    has already escaped them)."""
    text = json.dumps(data, ensure_ascii=False, **kwargs)
    return UNSAFE.sub(
        lambda m: m.group() if m.group() in "\n\t" else f"\\u{ord(m.group()):04x}", text
    )
