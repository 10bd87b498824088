"""Atomic file writes: a temporary file beside the target, renamed over it once it is complete.

A crash, a kill or a full disk then leaves either the old file or the new one, never half of one,
and no temporary file behind. The result gets the permissions of a plain new file (mkstemp's
temporary files are private, 0600).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def plain_file_mode() -> int:
    """The permissions a plain new file gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh hidden path beside ``path`` (its folder made) to write to; on a clean exit it replaces
    ``path`` with plain permissions, on any error it is removed and the error goes on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, plain_file_mode())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) to ``path``, atomically."""
    with replacing(path) as temp:
        temp.write_text(text, encoding="utf-8")


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically, synced to disk before the rename (run state depends on it)."""
    with replacing(path, ".npz") as temp, open(temp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
