"""How a command ends: the exit codes scripts rely on, and the failures that pick them.

Every command returns an exit code or raises one of these; ``main()`` (program.py)
turns them into one line on stderr and the code, never a traceback. They live
apart from the commands so that every command module can raise them without
importing the program that catches them.
"""

from __future__ import annotations

from typing import NoReturn

#: 0 success; 1 a failure (HTTP error, node unreachable, a job that failed); 2 a usage error.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Failure(Exception):
    """A failure the user must hear about in one line; the command exits 1."""


class SettingsFailure(Exception):
    """Settings or --app that cannot work: one line, exit 2, like a usage error."""


def usage_failure(message: str) -> NoReturn:
    """Bad settings for ``serve``: exit 2 with just the one line that names the culprit."""
    raise SettingsFailure(message)
