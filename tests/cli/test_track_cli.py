"""`stylepuppet track`: a short real clip end to end (track file, summary, preview) and bad inputs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from media_factories import zero_frame_video

from stylepuppet.cli import run
from stylepuppet.face.smoothing import SmoothingSettings
from stylepuppet.face.track import FaceTrack
from stylepuppet.video import VideoWriter, open_frames


@pytest.fixture(scope="module")
def short_clip(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    with VideoWriter(path, 25) as writer:
        for frame in open_frames(media_dir / "d0.mp4", max_frames=12):
            writer.write(frame)
    return path


def test_track_writes_the_file_summary_and_preview(tmp_path: Path, short_clip: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out, preview = tmp_path / "track.npz", tmp_path / "preview.mp4"
    code = run(["track", str(short_clip), "-o", str(out), "--size", "128", "--preview", str(preview), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("12 frames, face found in 12, filled 0; jitter ") and "lag" in lines[0]
    track = FaceTrack.load(out)
    assert track.num_frames == 12 and track.smoothing == SmoothingSettings()
    with open_frames(preview) as frames:
        assert frames.size == (128, 128) and frames.num_frames == 12
        first = next(iter(frames))
    green = (first[..., 1] > 200) & (first[..., 0] < 120) & (first[..., 2] < 120)
    assert green.sum() > 50  # the landmarks are drawn


def test_smoothing_options(tmp_path: Path, short_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.npz"
    assert run(["track", str(short_clip), "-o", str(out), "--smooth", "0", "--smooth-shape", "3", "--quiet"]) == 0
    assert FaceTrack.load(out).smoothing == SmoothingSettings(0.0, 0.0, 3.0)
    assert run(["track", str(short_clip), "-o", str(out), "--smooth", "-1"]) == 2  # click's usage error
    assert "--smooth" in capsys.readouterr().err


def noise_video(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with VideoWriter(path, 25) as writer:
        for _ in range(4):
            writer.write(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return path


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.mp4", "does not exist"),
    (lambda d: written(d / "notes.txt", b"just text"), "cannot read"),
    (lambda d: zero_frame_video(d / "zero.avi"), "no frames"),
    (lambda d: written(d / "broken.png", b"\x89PNG\r\n\x1a\nbroken"), "cannot read image"),
    (lambda d: noise_video(d / "noface.mp4"), "no face found in any of the 4 frame"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, make: Callable[[Path], Path], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = make(tmp_path)
    code = run(["track", str(source), "-o", str(tmp_path / "t.npz"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "t.npz").exists()


def test_no_traceback_from_the_installed_command(tmp_path: Path) -> None:
    source = zero_frame_video(tmp_path / "zero.avi")
    result = subprocess.run([sys.executable, "-m", "stylepuppet", "track", str(source), "-o", str(tmp_path / "t.npz")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
