"""Exclusive locks between processes: one download of a weights file at a time, one run per output folder.

The locks are ``flock`` locks on a lock file, which the kernel releases when the holding process
ends in any way (even SIGKILL), so a lock is never left stale. On platforms without ``fcntl``
(Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from stylepuppet.atomic import unwritable
from stylepuppet.errors import FolderInUseError

try:
    import fcntl
except ImportError:  # Windows: no locks
    fcntl = None  # type: ignore[assignment]

#: flock errors of filesystems that do not support locks (some network mounts): the lock is skipped there.
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on the file ``lock`` (created if needed)."""
    if fcntl is None:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def command_line() -> str:
    """This process's command line, for telling the user which process holds a lock."""
    argv = list(getattr(sys, "orig_argv", sys.argv)) or ["python"]
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def _holder(lock: Path) -> str:
    """Who holds ``lock``, as its holder wrote it (pid and command line)."""
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
        command = " ".join(str(info["command"]).split())
        command = command if len(command) <= 200 else command[:197] + "..."
        return f"pid {int(info['pid'])}: {command}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is just starting"


def _try_lock(lock: Path) -> IO[str] | None:
    """The open lock file, locked by us; None when another process holds it. The file is checked to be the
    one at ``lock`` after locking, as a holder removes it when it is done."""
    assert fcntl is not None
    while True:
        handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115 - held open for as long as the lock is
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        except OSError:
            handle.close()
            raise
        try:
            if os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()  # its holder removed it between our open and our lock: take the new one


@contextlib.contextmanager
def holding(lock: Path, what: str) -> Iterator[float]:
    """Hold the lock file ``lock`` for as long as the block runs, or raise FolderInUseError naming the process
    that holds it (``what`` names the locked thing in that message). Yields the time the lock was taken.

    The holder writes its pid and command line into the file and removes the file when it is done.
    """
    if fcntl is None:
        yield time.time()
        return
    try:
        handle = _try_lock(lock)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            yield time.time()
            return
        raise unwritable(lock, exc) from None
    if handle is None:
        raise FolderInUseError(f"{what} is in use by another stylepuppet run ({_holder(lock)}); wait for it to "
                               "finish, or choose another output folder")
    taken = time.time()
    try:
        try:
            handle.truncate(0)
            handle.write(json.dumps({"pid": os.getpid(), "command": command_line(), "started": taken}))
            handle.flush()
        except OSError as exc:
            raise unwritable(lock, exc) from None
        yield taken
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        handle.close()


def released(lock: Path, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the holder of ``lock`` (:func:`holding`) to let it go; True once it
    is free, and the file a killed holder left behind is removed then. Ctrl-C of a batch uses it: Ray may call a
    cancelled job finished before its worker has unwound, and shutting Ray down then would kill the worker with
    its temporary files and lock file still in place."""
    deadline = time.monotonic() + timeout
    while fcntl is not None and lock.exists():
        try:
            handle = _try_lock(lock)
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                return True
            raise
        if handle is not None:
            with contextlib.suppress(OSError):
                lock.unlink()
            handle.close()
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
