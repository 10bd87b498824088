"""Imports every sub-command module so each registers itself on `main`."""

from stylepuppet.cli import main  # noqa: F401
