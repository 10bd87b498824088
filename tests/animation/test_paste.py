"""Paste-back: the animated face put back into the look image or the driving frames, the rest left exact."""

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from stylepuppet.animation.outputs import ANIMATION_FULL, SIDE_BY_SIDE_FULL
from stylepuppet.animation.render import render_latents
from stylepuppet.animation.run import animate
from stylepuppet.animation.state import TRACK
from stylepuppet.animation.targets import Targets, square_quads
from stylepuppet.config import resolve_config
from stylepuppet.errors import ConfigError
from stylepuppet.face.align import apply_transform, invert_transform, polygon_ramp, quad_transform, to_aligned
from stylepuppet.face.track import FaceTrack
from stylepuppet.images import stamp_untrained
from stylepuppet.video import load_image, open_frames

TINY = {"untrained": True, "max_frames": 3, "subframes": 2, "schedule.steps_first": 4, "schedule.steps": 2}


class FrameSink:
    """Stands in for VideoWriter: keeps the exact frames (H.264 would blur the comparison) and leaves an
    empty file under the name, as the real writer leaves the video."""

    made: ClassVar[dict[str, "FrameSink"]] = {}

    def __init__(self, path, fps, audio_from=None, **kwargs):
        self.path, self.fps, self.audio_from, self.frames = Path(path), float(fps), audio_from, []
        FrameSink.made[self.path.name] = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.path.write_bytes(b"")

    def write(self, frame):
        self.frames.append(np.array(frame))


@pytest.fixture
def sink(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("stylepuppet.animation.render.VideoWriter", FrameSink)
    FrameSink.made = {}
    return FrameSink.made


def stamp_rows(frame: np.ndarray) -> int:
    """Rows the UNTRAINED stamp covers at the top of a frame of this width."""
    stamped = stamp_untrained(np.zeros_like(frame))
    return int(np.nonzero(stamped.any(axis=(1, 2)))[0].max()) + 1


def face_region(targets: Targets, quads: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """Where any frame's face may be pasted (its outline's hull in the picture, two pixels wider)."""
    region = np.zeros(shape, dtype=bool)
    for t, quad in enumerate(quads):
        outline = apply_transform(targets.outlines[t], invert_transform(quad_transform(quad, size)))
        region |= polygon_ramp(shape, outline, 1.0) > 0
    return binary_dilation(region, iterations=2)


def test_keep_identity_pastes_the_face_into_the_look_and_leaves_the_rest_of_it_exact(sink, media_dir, tmp_path):
    cfg = resolve_config("keep-identity", None, {**TINY, "look_loss": "msssim", "paste_back": True})
    out = tmp_path / "ki"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        animate(cfg, media_dir / "d0.mp4", out, look=media_dir / "s3.jpg", progress=False)
    look = load_image(media_dir / "s3.jpg")
    full, side = sink[ANIMATION_FULL], sink[SIDE_BY_SIDE_FULL]
    assert len(full.frames) == 6 and full.fps == 50 and full.audio_from == media_dir / "d0.mp4"
    assert all(f.shape == look.shape for f in full.frames)
    targets = Targets.load(out / "targets.npz")
    size = 64  # the tiny untrained StyleGAN2
    face = face_region(targets, np.broadcast_to(targets.look_quad, (3, 4, 2)), look.shape[:2], size)
    below = stamp_rows(look)
    kept = ~face
    kept[:below] = False
    assert kept.sum() > 0.5 * kept.size
    for frame in full.frames:
        assert np.array_equal(frame[kept], look[kept])  # the portrait stays, pixel for pixel
        assert np.abs(frame[face].astype(int) - look[face]).mean() > 2  # its face is the animated one
    assert len(side.frames) == 3 and side.fps == 25
    assert side.frames[0].shape == (look.shape[0], look.shape[0] + look.shape[1], 3)  # square driver | look

    again = render_latents(out / "latents.npz", tmp_path / "again.mp4", paste_back=True)
    assert again == 6 and all(np.array_equal(a, b) for a, b in zip(sink["again.mp4"].frames, full.frames))

    with pytest.warns(UserWarning, match="UNTRAINED"):
        rerun = animate(resolve_config("keep-identity", None, {**TINY, "look_loss": "msssim"}), media_dir / "d0.mp4",
                        out, look=media_dir / "s3.jpg", progress=False)
    assert rerun.resumed_from == 3  # paste-back changes only the rendering: nothing is optimised again
    assert not (out / ANIMATION_FULL).exists() and not (out / SIDE_BY_SIDE_FULL).exists()


def test_free_mode_pastes_into_the_driving_frames_along_the_smoothed_track(sink, media_dir, tmp_path):
    cfg = resolve_config("free", None, {**TINY, "start_candidates": 0, "start_rehearsal": 0, "paste_back": True,
                                        "paste_into": "driving"})
    out = tmp_path / "free"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        animate(cfg, media_dir / "d3.mp4", out, progress=False)
    targets = Targets.load(out / "targets.npz")
    track = FaceTrack.load(out / TRACK)
    # The face's place is the track's smoothed quads carried by one fixed map (the same square in every
    # frame's aligned crop), so it moves exactly as smoothly as they do.
    in_aligned = to_aligned(targets.paste_quads, track.quads, 64)
    np.testing.assert_allclose(in_aligned, np.broadcast_to(in_aligned[0], in_aligned.shape), atol=1e-3)
    with open_frames(media_dir / "d3.mp4", max_frames=3) as frames:
        driving = list(frames)
    full = sink[ANIMATION_FULL]
    assert len(full.frames) == 6 and full.frames[0].shape == driving[0].shape
    face = face_region(targets, targets.paste_quads, driving[0].shape[:2], 64)
    kept = ~face
    kept[:stamp_rows(driving[0])] = False
    for j, frame in enumerate(full.frames):
        assert np.array_equal(frame[kept], driving[j // 2][kept])
    assert np.abs(full.frames[0][face].astype(int) - driving[0][face]).mean() > 2

    with pytest.raises(ConfigError, match="--paste-into driving"):
        render_latents(out / "latents.npz", tmp_path / "look.mp4", paste_back=True)


def test_square_quads_put_gs_pixels_where_the_map_says_in_each_frame():
    rng = np.random.default_rng(0)
    centre = rng.uniform(100, 400, (5, 2))
    half = rng.uniform(60, 120, (5, 1))
    quads = np.stack([centre + half * d for d in ([-1, -1], [-1, 1], [1, 1], [1, -1])], axis=1)
    linear = np.array([[0.8, -0.1], [0.1, 0.8]])
    shift = np.array([5.0, -3.0])
    placed = square_quads(quads, 64, linear, shift)
    g_pixels = rng.uniform(0, 63, (5, 7, 2))
    in_frames = apply_transform(g_pixels, invert_transform(quad_transform(placed, 64)))
    np.testing.assert_allclose(to_aligned(in_frames, quads, 64), g_pixels @ linear.T + shift, atol=1e-9)
    np.testing.assert_allclose(square_quads(quads, 64, np.eye(2), np.zeros(2)), quads, atol=1e-9)
