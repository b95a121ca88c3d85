"""`python -m chunky ...`: see `chunky.cli`."""

import sys

from chunky.cli import main

sys.exit(main(prog="python -m chunky"))
