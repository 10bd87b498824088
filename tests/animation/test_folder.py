"""The output folder of a run: held by one run, cleaned of stale temporary files, and left as it was by a run
that fails before its first frame."""

import os
import time

import pytest

from stylepuppet.animation.folder import LOCK, remove_stale_temp_files, run_folder
from stylepuppet.animation.state import STATE, chunk_folder
from stylepuppet.errors import FolderInUseError, MediaError, OutputError


def test_a_folder_the_run_created_is_removed_when_it_fails_before_its_first_frame(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(MediaError), run_folder(out) as folder:
        assert folder.created and (out / LOCK).is_file()
        raise MediaError("no face")
    assert not out.exists()
    with pytest.raises(MediaError), run_folder(out) as folder:
        folder.commit()
        raise MediaError("diverged at frame 3")
    assert out.is_dir() and list(out.iterdir()) == []  # kept (it holds the run's work files), lock released


def test_an_existing_folder_is_left_as_it_was(tmp_path):
    (tmp_path / "animation.mp4").write_bytes(b"earlier")
    with pytest.raises(KeyboardInterrupt), run_folder(tmp_path) as folder:
        assert not folder.created
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["animation.mp4"]


def test_one_run_per_folder(tmp_path):
    with run_folder(tmp_path), pytest.raises(FolderInUseError, match=f"pid {os.getpid()}"), run_folder(tmp_path):
        pass


def test_a_file_in_the_way_is_an_output_error(tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(OutputError, match="is a file"), run_folder(tmp_path / "taken"):
        pass


def test_only_stale_temporary_files_of_the_runs_own_files_are_removed(tmp_path):
    chunk_folder(tmp_path / STATE).mkdir()
    stale = [tmp_path / ".state.npz.abc.npz", tmp_path / ".side_by_side.mp4.x1.tmp.mp4",
             chunk_folder(tmp_path / STATE) / ".000003.npz.y2.npz"]
    kept = [tmp_path / ".evaluation.mp4.z3.tmp.mp4",  # another command's (`evaluate`) temporary file
            tmp_path / ".my-notes", tmp_path / "latents.npz"]
    for path in stale + kept:
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 60, time.time() - 60))
    fresh = tmp_path / ".latents.npz.now.npz"  # being written by a run that started after the cut-off
    fresh.write_bytes(b"x")
    assert sorted(remove_stale_temp_files(tmp_path, time.time() - 30)) == sorted(stale)
    assert all(p.exists() for p in [*kept, fresh])
