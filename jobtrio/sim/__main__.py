"""``python -m jobtrio.sim``: the same as ``jobtrio sim``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
