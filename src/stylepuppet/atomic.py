"""Atomic file writes: a temporary file beside the target, renamed over it once it is complete.

A crash or a full disk then leaves either the old file or the new one, never half of one, and no
temporary file behind; a killed process can leave its hidden temporary file (:func:`temp_files`
finds them). The result gets the permissions of a plain new file (mkstemp's temporary files are
private, 0600). A write that fails raises :class:`~stylepuppet.errors.OutputError` (one line: the
file, the cause and what to do).
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from stylepuppet.errors import OutputError, StylePuppetError


def plain_file_mode() -> int:
    """The permissions a plain new file gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def unwritable(path: Path, exc: OSError) -> OutputError:
    """The one-line error for a failed write of ``path`` (keeps the cause's errno and strerror)."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space and run the command again; earlier files are as they were"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "choose a folder you can write to"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        advice = "a file or folder of that name is in the way; choose another path"
    else:
        advice = "check the folder is writable and has space"
    error = OutputError(f"cannot write {path} ({cause}); {advice}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, exc.filename
    return error


def temp_prefix(path: Path) -> str:
    """The name start of the hidden temporary files that stand in for ``path`` while it is written."""
    return f".{path.name}."


def temp_files(path: Path) -> list[Path]:
    """Hidden temporary files of unfinished writes of ``path`` (left by a killed process, or being written)."""
    return [p for p in path.parent.glob(glob.escape(temp_prefix(path)) + "*") if p.is_file()]


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh hidden path beside ``path`` (its folder made) to write to; on a clean exit it replaces
    ``path`` with plain permissions, on any error it is removed and the error goes on (an OSError as
    an :class:`OutputError` naming ``path``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise unwritable(path, exc) from None
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, plain_file_mode())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, StylePuppetError):
            raise
        raise unwritable(path, exc) from None
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
