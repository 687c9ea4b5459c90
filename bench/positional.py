"""The command lines of the bench scripts that take positional arguments.

``python bench/X.py URL JOBS PAIRS [SRC ...]``: a missing argument, a count
that is not a whole number of 1 or more, or ``--help`` answers the script's
usage (its docstring) and exits, instead of a traceback.
"""

from __future__ import annotations

import sys


def parse(
    doc: str | None, argv: list[str], counts: tuple[str, ...], trees: bool = True
) -> tuple[str, list[int], list[str]]:
    """The Redis URL, the ``counts`` as ints, and the rest (source trees, if ``trees``)."""
    usage = (doc or "").strip()
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        raise SystemExit(0)
    if len(argv) < 1 + len(counts):
        line = " ".join(["URL", *(c.upper() for c in counts)] + (["[SRC ...]"] if trees else []))
        raise SystemExit(f"usage: {line}: missing arguments\n\n{usage}")
    url = argv[0]
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise SystemExit(f"{url!r}: the first argument is a Redis URL (redis://host:port)")
    values = []
    for name, text in zip(counts, argv[1 : 1 + len(counts)], strict=True):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise SystemExit(f"{name} must be a whole number of 1 or more, not {text!r}")
        values.append(value)
    rest = argv[1 + len(counts) :]
    if rest and not trees:
        raise SystemExit(f"unexpected arguments: {' '.join(rest)}")
    return url, values, rest


if __name__ == "__main__":
    sys.exit("a module of the bench scripts, not a script")
