"""`python -m stylepuppet` runs the command line."""

import sys

from stylepuppet.cli import run

sys.exit(run())
