"""Shared fixtures: small threads for tiny networks, and the read-only real media beside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
