"""``python -m jobtrio.cli`` is the same CLI as the installed ``jobtrio`` script.

Tests and the local cluster start nodes as ``python -m jobtrio.cli``; the command groups
defined in other modules (cluster, schedules, users, chaos) must be there too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("group", ["cluster", "schedules", "users", "chaos"])
def test_every_command_group_is_reachable_through_python_m(group: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobtrio.cli", group, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"Usage: jobtrio {group}" in done.stdout
