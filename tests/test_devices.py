"""The CPU heap setting the projector makes (devices.keep_freed_memory)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stylepuppet
from stylepuppet.devices import keep_freed_memory

#: Allocates and frees six 40 MB tensors three times (the shape of an optimisation step's graph; above the
#: 32 MB that glibc's own threshold can rise to) and prints the page faults of the last round; with "keep"
#: the heap setting is made first.
CHURN = """
import resource, sys, torch
from stylepuppet.devices import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    before = faults()
    xs = [torch.ones(10 << 20) for _ in range(6)]
    del xs
print(faults() - before)
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018
    except (AttributeError, OSError, TypeError):
        return False
    return True


def churn_faults(mode: str) -> int:
    src = str(Path(stylepuppet.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not _glibc(), reason="the setting exists in glibc only")
def test_freed_memory_is_not_faulted_in_again() -> None:
    """Without the setting each round faults most of its 240 MB in again; with it, the pages are reused."""
    pages = 6 * (40 << 20) // 4096
    assert churn_faults("default") > pages // 2
    assert churn_faults("keep") < pages // 4


def test_keep_freed_memory_says_whether_it_applied() -> None:
    assert keep_freed_memory() is _glibc()
