"""The ``jobtrio`` command line: run a node, and drive any node over HTTP.

    jobtrio serve --app examples.processors:registry
    jobtrio submit email --payload '{"recipient": "a@example.com"}' --priority 10 --wait
    jobtrio submit noop --count 5000 --wait
    jobtrio jobs list --status failed,cancelled
    jobtrio jobs watch 01J9Z6N5G4X8W3QH2K7R1M0P9T
    jobtrio cluster status

Every command that talks to a node takes ``--url`` and ``--token`` (or
``JOBTRIO_URL`` / ``JOBTRIO_TOKEN``) and ``--json``. Humans get tables and
progress bars (on stderr, so stdout stays clean for pipes); scripts get
JSON, the API's own shapes, on stdout.

Exit codes are a contract for scripts: 0 success, 1 failure (an HTTP error,
the node unreachable, a job that ended failed or cancelled under ``--wait``
or ``watch``), 2 a usage error (bad flags, bad settings for ``serve``).
Failures are one line on stderr, never a traceback.
"""

from .params import AT
from .program import cli, main
from .render import job_line, progress_text
from .serve import SERVE_FLAGS

# what the console script and tests take from ``jobtrio.cli``
__all__ = ["AT", "SERVE_FLAGS", "cli", "job_line", "main", "progress_text"]
