"""``python -m jobtrio.bench``: ``jobtrio bench`` (the event consumers' process runs it)."""

import argparse
import sys

from . import DESCRIPTION, add_arguments, main

parser = argparse.ArgumentParser(prog="jobtrio bench", description=DESCRIPTION)
add_arguments(parser)
sys.exit(main(parser.parse_args()))
