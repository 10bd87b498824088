"""Runs started from the browser: one folder per run, one child process per run, progress and cancel.

A run's folder is an ordinary ``stylepuppet animate`` output folder holding its own copy of the
inputs and a ``run.toml`` of its settings, so it resumes from the page (same tab, same inputs and
settings) or from a terminal with the command :func:`resume_command` prints. Folder names carry
the browser session, so two tabs never share (or overwrite) a run.

The engine runs in a child process: cancelling ends that process at once (every finished frame is
already saved, so nothing is lost), and its progress bars are its own. A thread in the child reads
the live tqdm bars and sends them to the server through a queue.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import queue
import re
import shutil
import sys
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

import stylepuppet
from stylepuppet import atomic
from stylepuppet.errors import LookWarning, StylePuppetError, UntrainedWarning
from stylepuppet.video import content_digest

RUN_TOML, LOG = "run.toml", "ui.log"
#: Seconds between two looks at the child's progress bars.
POLL = 0.25


@dataclass(frozen=True)
class RunRequest:
    """What the page asks for: inputs, preset (None: the mode's) and dotted config overrides."""

    driving: Path
    look: Path | None
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    evaluate: bool = True


def session_folder(root: Path, session: str, request: RunRequest) -> Path:
    """The folder of ``request`` in browser session ``session``: the same inputs and settings in the same
    session map to the same folder (so running again resumes), anything else to another."""
    h = hashlib.sha256()
    look = content_digest(request.look) if request.look is not None else "-"
    for part in (content_digest(request.driving), look, request.preset or "-",
                 json.dumps(request.overrides, sort_keys=True), str(request.evaluate)):
        h.update(part.encode() + b";")
    tab = re.sub(r"[^A-Za-z0-9]", "", session)[:12] or "local"
    return root / f"{tab}-{h.hexdigest()[:12]}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are valid TOML


def run_toml(preset: str | None, overrides: dict[str, Any]) -> str:
    """The settings as a TOML file for ``stylepuppet animate --config`` (dotted keys, as the CLI takes them)."""
    lines = [f"preset = {_toml_value(preset)}"] if preset else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in sorted(overrides.items()) if value is not None]
    return "\n".join(lines) + "\n"


def prepare_folder(folder: Path, request: RunRequest) -> RunRequest:
    """Copy the inputs into ``folder/inputs`` and write ``folder/run.toml``; the request on the copies."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)

    def keep(path: Path | None, stem: str) -> Path | None:
        if path is None:
            return None
        copy = inputs / f"{stem}{path.suffix.lower()}"
        if not copy.exists():
            shutil.copyfile(path, copy)
        return copy

    atomic.write_text(folder / RUN_TOML, run_toml(request.preset, request.overrides))
    driving = keep(request.driving, "driving")
    assert driving is not None
    return RunRequest(driving, keep(request.look, "look"), request.preset, request.overrides, request.evaluate)


def resume_command(folder: Path, request: RunRequest) -> str:
    """The terminal command that resumes (or re-renders) the run in ``folder``."""
    look = f" --look {request.look}" if request.look is not None else ""
    judge = " --evaluate" if request.evaluate else ""
    return (f"stylepuppet animate --config {folder / RUN_TOML} --driving {request.driving}{look}{judge} "
            f"-o {folder}")


def _report_bars(channel: multiprocessing.Queue, stop: threading.Event) -> None:
    """Send the newest live progress bar (description, done, total, unit, postfix) until ``stop``."""
    last = None
    while not stop.wait(POLL):
        bars = [b for b in list(tqdm._instances) if b.total]
        if not bars:
            continue
        bar = bars[-1]
        now = (bar.desc.rstrip(": "), int(bar.n), int(bar.total), bar.unit, str(bar.postfix or ""))
        if now != last:
            channel.put(("progress", now))
            last = now


def _forward_warnings(channel: multiprocessing.Queue) -> None:
    """Send the warnings a user must act on (a look the generator cannot draw, substituted networks) to the
    page as they happen; every warning still goes to the log."""
    log = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, LookWarning | UntrainedWarning):
            channel.put(("warning", str(message)))
        log(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def work(request: RunRequest, folder: Path, channel: multiprocessing.Queue) -> None:
    """The child process: animate (resuming whatever the folder holds), then judge; messages to ``channel``.

    Progress bars and warnings go to ``folder/ui.log``; the page gets one-line messages only, and the
    warnings that change what the run is worth (:func:`_forward_warnings`).
    """
    log = (folder / LOG).open("a", encoding="utf-8")
    sys.stderr = log
    _forward_warnings(channel)
    stop = threading.Event()
    watcher = threading.Thread(target=_report_bars, args=(channel, stop), daemon=True)
    watcher.start()
    try:
        result = stylepuppet.animate(request.driving, folder, look=request.look, config=folder / RUN_TOML)
        lines = stylepuppet.evaluate(folder, request.driving, progress=True).lines() if request.evaluate else []
        channel.put(("done", {"summary": result.summary(), "lines": lines}))
    except StylePuppetError as exc:
        channel.put(("error", str(exc)))
    except Exception as exc:  # the page shows one line; the traceback goes to the run's log
        traceback.print_exc(file=log)
        channel.put(("error", f"the run failed unexpectedly ({type(exc).__name__}: {exc}); "
                              f"details in {folder / LOG}"))
    finally:
        stop.set()
        watcher.join()
        log.flush()


class Job:
    """One run in its child process."""

    def __init__(self, request: RunRequest, folder: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.request, self.folder = request, folder
        self.channel = context.Queue()
        self.process = context.Process(target=work, args=(request, folder, self.channel), daemon=True)

    def start(self) -> None:
        self.process.start()

    def messages(self) -> list[tuple[str, Any]]:
        """Every message sent since the last call (without waiting)."""
        found = []
        while True:
            try:
                found.append(self.channel.get_nowait())
            except queue.Empty:
                return found

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def cancel(self) -> None:
        """End the child now (SIGTERM, then SIGKILL after 5 s); the frames it finished stay saved."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
