"""The ``jobtrio`` program: the root group, every command on it, and ``main()``.

``main()`` is the console script (``jobtrio = "jobtrio.cli:main"``) and what
tests call: it returns the exit code instead of raising SystemExit, and turns
every failure into one line on stderr (exits.py has the codes). The command
modules import nothing of this one; it imports them all, so there is no loop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from ..client import ConnectionFailed, JobtrioError
from ..text import printable
from .chaos import chaos
from .cluster import cluster
from .exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Failure, SettingsFailure
from .jobs import jobs
from .output import err
from .passthrough import bench, sim
from .queues import queues
from .schedules import schedules
from .serve import healthcheck, serve
from .stats import stats
from .submit import submit
from .users import login, users
from .workflows import workflows


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="jobtrio", prog_name="jobtrio")
def cli() -> None:
    """jobtrio: a distributed, fault-tolerant background-job processor on trio.

    Run a node with `jobtrio serve`; everything else talks to a node over its
    REST API (--url, default http://127.0.0.1:8080, or JOBTRIO_URL).
    """


for command in (
    bench,
    chaos,
    cluster,
    healthcheck,
    jobs,
    login,
    queues,
    schedules,
    serve,
    sim,
    stats,
    submit,
    users,
    workflows,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of raising SystemExit."""
    try:
        result = cli.main(args=argv, prog_name="jobtrio", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err.print("Aborted.")
        return 130
    except ConnectionFailed as exc:
        # a code: the node answered (its event stream closed); no code: nothing answered
        hint = "" if exc.code else " (is a node running there? set --url or JOBTRIO_URL)"
        _fail(f"{exc}{hint}")
        return EXIT_FAILURE
    except JobtrioError as exc:
        detail = f" (HTTP {exc.status}, {exc.code})" if exc.status else ""
        _fail(f"{exc}{detail}")
        return EXIT_FAILURE
    except Failure as exc:
        _fail(str(exc))
        return EXIT_FAILURE
    except SettingsFailure as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        # `jobtrio jobs list | head`: the reader left; not an error worth a word
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        # a bug of ours: one line by default, the whole story on request
        if os.environ.get("JOBTRIO_DEBUG"):
            raise
        _fail(
            f"unexpected error: {type(exc).__name__}: {exc} (JOBTRIO_DEBUG=1 shows the traceback)"
        )
        return EXIT_FAILURE
    return result if isinstance(result, int) else EXIT_OK


def _fail(message: str) -> None:
    # the message may quote a node's words: no control character reaches the terminal
    click.echo(f"jobtrio: {printable(message, keep_newlines=False)}", err=True)
