"""Relative motion: identity, size normalisation, rotation, reference choice, other point sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylepuppet.face.motion import (
    apply_similarity,
    asymmetry,
    choose_reference,
    fit_similarity,
    mouth_opening,
    relative_motion,
)
from stylepuppet.landmarks.scheme import GROUPS


def _similar(points: torch.Tensor, scale: float, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ (scale * rot).T + torch.tensor(shift)


def face(mouth_gap: float = 0.0, turn: float = 0.0, seed: int = 0) -> np.ndarray:
    """A symmetric 68-point face, optionally with an open mouth and the nose moved sideways (a turn)."""
    rng = np.random.default_rng(seed)
    p = np.zeros((68, 2))
    p[0:17] = np.stack([np.linspace(40, 160, 17), 120 + 50 * np.sin(np.linspace(0, np.pi, 17))], axis=1)
    p[17:22] = np.stack([np.linspace(55, 90, 5), np.full(5, 70.0)], axis=1)
    p[22:27] = np.stack([np.linspace(110, 145, 5), np.full(5, 70.0)], axis=1)
    p[27:31] = np.stack([np.full(4, 100.0), np.linspace(85, 120, 4)], axis=1)
    p[31:36] = np.stack([np.linspace(88, 112, 5), np.full(5, 128.0)], axis=1)
    ring = np.array([[-8, 0], [-4, -3], [4, -3], [8, 0], [4, 3], [-4, 3]], dtype=np.float64)
    p[36:42] = ring + [75, 90]
    p[42:48] = ring + [125, 90]
    p[48:60] = np.stack([100 + 22 * np.cos(np.linspace(np.pi, -np.pi, 12, endpoint=False)),
                         150 + 8 * np.sin(np.linspace(np.pi, -np.pi, 12, endpoint=False))], axis=1)
    p[60:68] = np.stack([100 + 15 * np.cos(np.linspace(np.pi, -np.pi, 8, endpoint=False)),
                         150 + 1 * np.sin(np.linspace(np.pi, -np.pi, 8, endpoint=False))], axis=1)
    lower = [65, 66, 67]
    p[lower, 1] += mouth_gap
    p[55:60, 1] += mouth_gap
    p[27:36, 0] += turn
    return p + rng.normal(0, 0.01, p.shape)


def test_identity_when_driving_equals_reference() -> None:
    look = face(seed=1) * 1.3 + 20
    driving = np.stack([face()] * 5)
    np.testing.assert_allclose(relative_motion(driving, look, 0), np.stack([look] * 5), atol=1e-9)


def test_motion_is_scaled_to_the_look_face() -> None:
    ref = face()
    opened = face(mouth_gap=10.0)
    driving = np.stack([ref, opened])
    look = ref * 0.5 + 7  # the look's face is half the size, elsewhere
    targets = relative_motion(driving, look, 0)
    np.testing.assert_allclose(targets[1] - look, (opened - ref) * 0.5, atol=1e-3)


def test_motion_is_rotated_into_the_look_frame() -> None:
    ref, opened = face(), face(mouth_gap=10.0)
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    look = ref @ rot.T * 2
    targets = relative_motion(np.stack([ref, opened]), look, 0)
    np.testing.assert_allclose(targets[1] - look, 2 * (opened - ref) @ rot.T, atol=1e-3)


def test_fit_similarity_recovers_a_known_transform() -> None:
    src = torch.randn(3, 20, 2, generator=torch.Generator().manual_seed(0)) * 10
    dst = _similar(src, 1.3, 0.2, (4.0, -7.0))
    k, shift = fit_similarity(src, dst, torch.ones(20))
    assert torch.allclose(k.abs(), torch.full((3,), 1.3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(torch.angle(k), torch.full((3,), 0.2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(apply_similarity(src, k, shift), dst, atol=1e-4)


def test_fit_similarity_uses_only_weighted_points() -> None:
    src = torch.randn(1, 10, 2, generator=torch.Generator().manual_seed(1)) * 10
    dst = _similar(src, 0.8, -0.1, (1.0, 2.0))
    dst[:, 5:] += 50.0  # unweighted points moved far away must not change the fit
    weights = torch.cat([torch.ones(5), torch.zeros(5)])
    k, shift = fit_similarity(src, dst, weights)
    assert torch.allclose(apply_similarity(src[:, :5], k, shift), dst[:, :5], atol=1e-4)


def test_relative_motion_needs_a_reference_whose_rigid_points_are_apart() -> None:
    driving = np.zeros((2, 68, 2))
    with pytest.raises(ValueError, match="rigid points coincide"):
        relative_motion(driving, face(), 0)


def test_neutral_measures() -> None:
    assert mouth_opening(face(mouth_gap=10)) > mouth_opening(face()) + 0.1
    assert asymmetry(face()) < 0.01
    assert asymmetry(face(turn=8.0)) > 0.2


def test_choose_reference_picks_the_closed_frontal_frame_of_the_first_second() -> None:
    frames = [face(mouth_gap=8, seed=s) for s in range(10)]
    frames[3] = face(turn=1.0, seed=3)  # closed but a little turned
    frames[6] = face(seed=6)  # closed and frontal: the neutral one
    frames[7] = face(mouth_gap=8, seed=7)
    driving = np.stack(frames + [face(seed=20)])  # frame 10 is neutral too, but after the first second
    assert choose_reference(driving, fps=10) == 6
    driving[6] = np.nan
    assert choose_reference(driving, fps=10) == 3
    assert choose_reference(np.full((4, 68, 2), np.nan), fps=25) == 0
    targets = relative_motion(driving[:6], face(), fps=10)  # default reference: frame 3
    np.testing.assert_allclose(targets[3], face(), atol=1e-9)


def test_other_point_sets_through_their_groups() -> None:
    """A net with its own numbering (here the 68 points in reversed order) gives the same targets."""
    order = np.arange(68)[::-1]
    groups = {name: np.array([int(np.where(order == i)[0][0]) for i in idx]) for name, idx in GROUPS.items()}
    driving = np.stack([face(), face(mouth_gap=9.0), face(turn=3.0)])
    look = face(seed=4) * 1.2
    expected = relative_motion(driving, look, 0)
    got = relative_motion(driving[:, order], look[order], 0, groups=groups)
    np.testing.assert_allclose(got, expected[:, order], atol=1e-9)
    assert choose_reference(driving[:, order], 25, groups) == choose_reference(driving, 25)


def test_other_point_sets_must_bring_their_groups() -> None:
    mesh_like = np.zeros((3, 468, 2))
    with pytest.raises(ValueError, match="pass the landmark net's groups"):
        relative_motion(mesh_like, mesh_like[0], 0)
    with pytest.raises(ValueError, match="pass the landmark net's groups"):
        choose_reference(mesh_like, 25)


def test_bad_shapes_and_gaps() -> None:
    with pytest.raises(ValueError, match="look"):
        relative_motion(np.zeros((2, 68, 2)), np.zeros((5, 2)))
    driving = np.stack([face(), face()])
    driving[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        relative_motion(driving, face(), 0)
    with pytest.raises(ValueError, match="outside"):
        relative_motion(np.stack([face()]), face(), 5)
