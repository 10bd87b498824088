"""The output folder of a run: one run at a time, nothing changed before the run has something to show.

* **Lock.** A run holds ``OUT/.stylepuppet.lock`` (:func:`stylepuppet.lock.holding`) for as long as it
  runs; a second run into the same folder stops at once with a one-line error naming the first one's
  process (pid and command line).
* **Stale temporary files.** Every file of a run is written to a hidden temporary file and renamed
  into place (:mod:`stylepuppet.atomic`); a killed run leaves its temporary file behind. Once the lock
  is held, no other run is writing here, so the temporary files of the run's own files that are older
  than the lock are removed.
* **Nothing changed before the first frame.** A new run writes nothing into the folder until its first
  frame is optimised (:meth:`RunFolder.commit`): a run that fails before that (bad input, missing
  weights, no face, divergence) leaves an earlier run's files exactly as they were, and a folder it
  created is removed again. The earlier run's outputs stay until the new run writes its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stylepuppet import atomic, lock
from stylepuppet.animation.outputs import LOOK_FILES, OUTPUTS
from stylepuppet.animation.state import STATE, TARGETS, TRACK, chunk_folder
from stylepuppet.errors import OutputError

#: The lock file of a run folder.
LOCK = ".stylepuppet.lock"


@dataclass
class RunFolder:
    """A run's output folder while the run holds it. ``committed``: the run's own files are in it."""

    path: Path
    created: bool
    committed: bool = False

    def commit(self) -> None:
        """From here on the folder holds this run's work files (the caller writes them next)."""
        self.committed = True


#: The files a run writes into its folder (besides its state chunks).
RUN_FILES = (STATE, TARGETS, TRACK, *LOOK_FILES, *(o.name for o in OUTPUTS if o.write is not None))


def remove_stale_temp_files(out: Path, before: float) -> list[Path]:
    """Remove the hidden temporary files of the run's files in ``out`` last written before ``before``
    (seconds since the epoch); returns them."""
    temps = [temp for name in RUN_FILES for temp in atomic.temp_files(out / name)]
    chunks = chunk_folder(out / STATE)
    if chunks.is_dir():  # the chunks' hidden files are only ever their temporary files
        temps += [p for p in chunks.glob(".*") if p.is_file()]
    removed = []
    for temp in temps:
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < before:
                temp.unlink()
                removed.append(temp)
    return removed


def _make(out: Path) -> bool:
    """Create ``out`` if needed (OutputError when it cannot be); whether it was created."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; -o takes a folder for the run's outputs: choose another path")
    if out.is_dir():
        return False
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        raise atomic.unwritable(out, exc) from None
    return True


@contextlib.contextmanager
def run_folder(out: Path) -> Iterator[RunFolder]:
    """Hold the output folder ``out`` for one run (see the module docstring); a folder this call created is
    removed again when the run fails before :meth:`RunFolder.commit`."""
    folder = RunFolder(out, _make(out))
    try:
        with lock.holding(out / LOCK, f"the output folder {out}") as taken:
            remove_stale_temp_files(out, taken)
            yield folder
    except BaseException:
        if folder.created and not folder.committed:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
