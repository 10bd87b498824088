"""Shared fixtures: small threads for tiny networks, and the read-only real media beside the repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    """The workplace's read-only ``shared/`` folder: beside this checkout, or beside the repository it was
    cloned from (a CI clone elsewhere, e.g. ``git clone /work/main /tmp/ci-check``)."""
    beside = REPO.parent / "shared"
    if beside.is_dir():
        return beside
    origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return Path(origin).parent / "shared" if origin and Path(origin).is_dir() else beside


SHARED = _shared()


@pytest.fixture(scope="session")
def media_dir() -> Path:
    path = SHARED / "media"
    assert path.is_dir(), f"real test media expected at {path} (the workplace's shared/ beside the repo)"
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = SHARED / "models"
    assert path.is_dir(), f"real pretrained test networks expected at {path}"
    return path
