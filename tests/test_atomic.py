import os
import stat

import numpy as np
import pytest

from stylepuppet import atomic


class Boom:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("disk full")


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    atomic.save_npz(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(RuntimeError):
        atomic.save_npz(tmp_path / "x.npz", a=Boom())
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    assert np.load(tmp_path / "x.npz")["a"].shape == (3,)


def test_written_files_get_plain_permissions_and_their_folder_is_made(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "sub" / "a.json", "{}")
        atomic.save_npz(tmp_path / "sub" / "b.npz", a=np.ones(2))
    finally:
        os.umask(old)
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE((tmp_path / "sub" / name).stat().st_mode) == 0o644
    assert (tmp_path / "sub" / "a.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.json", "b.npz"]


def test_replacing_removes_the_temporary_when_the_writer_fails(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(ValueError), atomic.replacing(tmp_path / "keep.txt") as temp:
        temp.write_text("half")
        raise ValueError("stopped")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "old"
