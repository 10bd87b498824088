"""Locks between processes: a held folder lock refuses a second holder, naming the first; it never goes stale."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stylepuppet.errors import FolderInUseError, OutputError
from stylepuppet.lock import command_line, exclusive, holding, released

HOLD = """
import sys, time
from pathlib import Path
from stylepuppet.lock import holding
with holding(Path(sys.argv[1]), "the folder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    lock = tmp_path / ".lock"
    with holding(lock, "the folder") as taken:
        assert abs(taken - time.time()) < 60
        info = json.loads(lock.read_text())
        assert info["pid"] == os.getpid() and info["command"] == command_line()
        with pytest.raises(FolderInUseError, match=rf"the folder is in use by another stylepuppet run \(pid "
                                                   rf"{os.getpid()}: "), holding(lock, "the folder"):
            pass
    assert not lock.exists()  # released and removed
    with holding(lock, "the folder"):  # free again
        pass


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    lock = tmp_path / ".lock"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match=f"pid {holder.pid}: "), holding(lock, "the folder"):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists()  # SIGKILL left the file, but not the lock
    with holding(lock, "the folder"):
        pass


def test_a_lock_that_cannot_be_created_is_an_output_error(tmp_path):
    lock = tmp_path / "missing" / ".lock"
    with pytest.raises(OutputError, match=f"cannot write {lock}"), holding(lock, "the folder"):
        pass


def test_exclusive_waits_for_the_holder(tmp_path):
    lock = tmp_path / "sub" / ".download.lock"
    with exclusive(lock):
        assert lock.exists()
    with exclusive(lock):  # released
        pass


def test_released_waits_for_the_holder_and_clears_what_a_killed_one_left(tmp_path):
    lock = tmp_path / ".lock"
    assert released(lock, 0.0)  # no lock at all
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert not released(lock, 0.3)  # still held: gives up after the timeout
        assert 0.3 <= time.monotonic() - start < 5 and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists()  # the killed holder's file ...
    assert released(lock, 5.0) and not lock.exists()  # ... is free and removed
