"""``python -m jobtrio.cli``: the same command line as the installed ``jobtrio`` script.

Tests, benchmarks and the local cluster start nodes this way, with the
interpreter they run under rather than whichever ``jobtrio`` is on PATH.
"""

import sys

from . import main

sys.exit(main())
