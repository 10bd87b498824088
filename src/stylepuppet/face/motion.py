"""Relative motion: move a base face's own landmarks (the look's, or free mode's start face's) the way the
driver moves.

target_t = base + A · (driving_t − driving_ref), where A is the scale·rotation that best maps the
driver's reference face onto the base face on its rigid points (eyes and nose, which expressions
barely move; :func:`fit_similarity`, which free mode's start face uses too). The base keeps its face
shape; only the changes since the reference are copied, sized to the base face. Everything is in
aligned-crop coordinates, where both faces are upright.

Point sets are described by their named groups (:data:`stylepuppet.landmarks.scheme.GROUPS` for the 68
iBUG points, or a landmark net's ``groups``, e.g. the mesh's), so the same code serves any net.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from stylepuppet.landmarks.scheme import GROUPS, NUM_POINTS, eye_centres

Groups = Mapping[str, Sequence[int] | np.ndarray | range]

#: Groups that expressions hardly move.
RIGID_GROUPS = ("nose_bridge", "lower_nose", "right_eye", "left_eye")


def _indices(groups: Groups, *names: str) -> np.ndarray:
    return np.concatenate([np.asarray(groups[name], dtype=np.int64) for name in names])


def _check_groups(num_points: int, groups: Groups) -> None:
    """The default groups number the 68 iBUG points; other point sets must bring their own."""
    if groups is GROUPS and num_points != NUM_POINTS:
        raise ValueError(f"{num_points} points are not the 68 iBUG points; pass the landmark net's groups")


def fit_similarity(source: Tensor, target: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least-squares scale·rotation ``a + ib`` and shift with target ≈ (a + ib)·source + shift.

    source, target [N, P, 2]; weights [P] (non-negative, positive sum). Returns the complex factor
    [N] and the shift [N, 2]. Points are treated as complex numbers, where a similarity is ``k·z + t``.
    """
    w = (weights / weights.sum())[None, :]
    s = torch.complex(source[..., 0].double(), source[..., 1].double())
    t = torch.complex(target[..., 0].double(), target[..., 1].double())
    mu_s = (w * s).sum(dim=1, keepdim=True)
    mu_t = (w * t).sum(dim=1, keepdim=True)
    k = (w * (t - mu_t) * (s - mu_s).conj()).sum(dim=1) / (w * (s - mu_s).abs().square()).sum(dim=1)
    shift = mu_t[:, 0] - k * mu_s[:, 0]
    return k, torch.stack([shift.real, shift.imag], dim=-1).to(source.dtype)


def apply_similarity(points: Tensor, k: Tensor, shift: Tensor) -> Tensor:
    """Points [N, P, 2] (or centres [N, 2]) moved by the similarity ``k·z + shift`` (k [N] complex)."""
    z = torch.complex(points[..., 0].double(), points[..., 1].double())
    k = k.reshape(-1, *([1] * (z.ndim - 1)))
    moved = k * z
    return torch.stack([moved.real, moved.imag], dim=-1).to(points.dtype) + shift.reshape(
        -1, *([1] * (points.ndim - 2)), 2)


def mouth_opening(points: np.ndarray, groups: Groups = GROUPS) -> np.ndarray:
    """Height of the inner lip (top to bottom, y is down in upright faces) over the inter-ocular distance.

    points [..., P, 2] -> [...]; for the 68 points that is the gap between the lips (the corners
    sit at mid height).
    """
    points = np.asarray(points, dtype=np.float64)
    inner = points[..., np.asarray(groups["inner_lip"]), 1]
    right, left = eye_centres(points, groups)
    return (inner.max(axis=-1) - inner.min(axis=-1)) / np.linalg.norm(left - right, axis=-1)


def asymmetry(points: np.ndarray, groups: Groups = GROUPS) -> np.ndarray:
    """How far a face is turned (yaw), 0 when frontal: the difference between the nose's distances to the
    two eye centres and to the two ends of the jaw line (its leftmost and rightmost points), over the
    inter-ocular distance. points [..., P, 2] -> [...]."""
    points = np.asarray(points, dtype=np.float64)
    nose = points[..., _indices(groups, "nose_bridge", "lower_nose"), :].mean(axis=-2)
    right, left = eye_centres(points, groups)
    jaw = points[..., np.asarray(groups["jaw"]), :]
    order = np.argsort(jaw[..., 0], axis=-1)
    jaw_right = np.take_along_axis(jaw, order[..., :1, None], axis=-2)[..., 0, :]
    jaw_left = np.take_along_axis(jaw, order[..., -1:, None], axis=-2)[..., 0, :]

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(a - b, axis=-1)

    eyes = dist(nose, right) - dist(nose, left)
    ends = dist(nose, jaw_right) - dist(nose, jaw_left)
    return (np.abs(eyes) + np.abs(ends)) / dist(left, right)


def choose_reference(driving: np.ndarray, fps: float, groups: Groups = GROUPS) -> int:
    """Index of the most neutral frame of the first second: the lowest mouth opening + asymmetry.

    "Neutral" is a closed mouth (inner-lip height) and a frontal face (nose equally far from both
    eyes and both jaw ends), each relative to the inter-ocular distance, so the reference adds no
    expression or head turn of its own to every target. Frames with missing points are skipped;
    0 if none of the first second is usable.
    """
    driving = np.asarray(driving, dtype=np.float64)
    if driving.ndim != 3 or driving.shape[-1] != 2:
        raise ValueError(f"driving must be [T, P, 2], got {driving.shape}")
    _check_groups(driving.shape[1], groups)
    window = driving[: max(1, int(round(fps)))]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = mouth_opening(window, groups) + asymmetry(window, groups)
    if not np.isfinite(score).any():
        return 0
    return int(np.argmin(np.where(np.isfinite(score), score, np.inf)))


def relative_motion(driving: np.ndarray, look: np.ndarray, ref_index: int | None = None, *,
                    fps: float = 25.0, groups: Groups = GROUPS, strength: float = 1.0) -> np.ndarray:
    """Landmark targets [T, P, 2]: ``look`` [P, 2] moved by the driver's [T, P, 2] change since its reference.

    ``ref_index`` defaults to :func:`choose_reference` over the first second (``fps`` frames).
    ``strength`` scales the change (1: as the driver moves; below 1: toned down).
    """
    driving = np.asarray(driving, dtype=np.float64)
    look = np.asarray(look, dtype=np.float64)
    if driving.ndim != 3 or driving.shape[-1] != 2 or look.shape != driving.shape[1:]:
        raise ValueError(f"driving must be [T, P, 2] and look [P, 2], got {driving.shape} and {look.shape}")
    if not np.isfinite(driving).all() or not np.isfinite(look).all():
        raise ValueError("landmarks contain NaN; fill the track's gaps first")
    _check_groups(driving.shape[1], groups)
    if ref_index is None:
        ref_index = choose_reference(driving, fps, groups)
    if not -driving.shape[0] <= ref_index < driving.shape[0]:
        raise ValueError(f"ref_index {ref_index} is outside the {driving.shape[0]} frames")
    reference = driving[ref_index]
    linear, _ = rigid_fit(reference, look, groups)
    return look + strength * (driving - reference) @ linear.T


def rigid_fit(source: np.ndarray, target: np.ndarray, groups: Groups = GROUPS) -> tuple[np.ndarray, np.ndarray]:
    """The scale·rotation [2, 2] and shift [2] that best map one face's points [P, 2] onto another's on
    their rigid points (:data:`RIGID_GROUPS`): target ≈ source @ linear.T + shift."""
    rigid = _indices(groups, *RIGID_GROUPS)
    k, shift = fit_similarity(torch.from_numpy(np.asarray(source, dtype=np.float64)[rigid])[None],
                              torch.from_numpy(np.asarray(target, dtype=np.float64)[rigid])[None],
                              torch.ones(len(rigid), dtype=torch.float64))
    a, b = float(k.real[0]), float(k.imag[0])
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError("the rigid points coincide; cannot fit a scale")
    return np.array([[a, -b], [b, a]]), shift[0].numpy()
