"""Jitter and lag: the definitions on hand-made tracks."""

from __future__ import annotations

import numpy as np
import pytest

from stylepuppet.face.metrics import inter_ocular, jitter, lag, quad_side
from stylepuppet.landmarks.scheme import eye_centres


def square(centre: tuple[float, float], half: float) -> np.ndarray:
    cx, cy = centre
    return np.array([[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy + half], [cx + half, cy - half]],
                    dtype=np.float64)


def test_steady_motion_has_no_jitter() -> None:
    quads = np.stack([square((10 + 2.5 * t, 20 - t), 50) for t in range(10)])
    assert jitter(quads) == pytest.approx(0.0, abs=1e-12)


def test_one_displaced_frame() -> None:
    # Frame 2 of 5 moved right by 3 px: its corners sit 3 px from the neighbours' midpoint, and frames 1
    # and 3 each sit 1.5 px from theirs; side 100 -> (1.5 + 3 + 1.5) / 3 interior frames / 100.
    quads = np.stack([square((0, 0), 50)] * 5)
    quads[2] += [3.0, 0.0]
    assert quad_side(quads[0]) == pytest.approx(100.0)
    assert jitter(quads) == pytest.approx(0.02)


def test_jitter_is_scale_free_and_needs_three_frames() -> None:
    rng = np.random.default_rng(0)
    quads = np.stack([square((0, 0), 50)] * 20) + rng.normal(0, 0.5, (20, 4, 2))
    assert jitter(quads * 3) == pytest.approx(jitter(quads))
    assert jitter(quads[:2]) == 0.0
    with pytest.raises(ValueError):
        jitter(quads[0])


def test_lag_over_inter_ocular_distance_detected_frames_only() -> None:
    raw = np.zeros((3, 68, 2))
    raw[:, 36:42] = [0.0, 0.0]
    raw[:, 42:48] = [40.0, 0.0]
    assert inter_ocular(raw[0]) == pytest.approx(40.0)
    right, left = eye_centres(raw)
    assert right.shape == (3, 2) and left[0, 0] == 40.0
    smoothed = raw + [2.0, 0.0]
    smoothed[2] += [100.0, 0.0]
    detected = np.array([True, True, False])
    assert lag(smoothed, raw, detected) == pytest.approx(2.0 / 40.0)
    raw_nan = raw.copy()
    raw_nan[2] = np.nan
    assert lag(smoothed, raw_nan) == pytest.approx(2.0 / 40.0)  # default: finite raw frames
    assert lag(raw, raw) == 0.0
