"""Imports every sub-command module so each registers itself on `main`."""

from stylepuppet.cli import main  # noqa: F401
from stylepuppet.cli import animate  # noqa: F401
from stylepuppet.cli import render  # noqa: F401
from stylepuppet.cli import evaluate  # noqa: F401
from stylepuppet.cli import weights  # noqa: F401
from stylepuppet.cli import generate  # noqa: F401
from stylepuppet.cli import track  # noqa: F401
