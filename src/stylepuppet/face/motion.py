"""Relative motion for keep-identity mode: move the look's own landmarks the way the driver moves.

target_t = look + A · (driving_t − driving_ref), where A is the scale·rotation that best maps the
driver's reference face onto the look's face on its rigid points (eyes and nose, which expressions
barely move). The look keeps its face shape; only the changes since the reference are copied, sized
to the look's face. Everything is in aligned-crop coordinates, where both faces are upright.

Point sets are described by their named groups (:data:`stylepuppet.landmarks.scheme.GROUPS` for the 68
iBUG points, or a landmark net's ``groups``, e.g. the mesh's), so the same code serves any net.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

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


def similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares scale·rotation A [2, 2] and shift t [2] with target ≈ source @ A.T + t (no reflection)."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or source.shape[0] < 2:
        raise ValueError(f"need two matching point sets [P >= 2, 2], got {source.shape} and {target.shape}")
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    var = float((s**2).sum())
    if var <= 0:
        raise ValueError("source points coincide; cannot fit a scale")
    # In 2D the best scale·rotation is [[a, -b], [b, a]] with a = Σ s·t / Σ|s|² and b = Σ s×t / Σ|s|².
    a = float((s * t).sum()) / var
    b = float((s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()) / var
    linear = np.array([[a, -b], [b, a]])
    return linear, mu_t - mu_s @ linear.T


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
    rigid = _indices(groups, *RIGID_GROUPS)
    linear, _ = similarity_fit(reference[rigid], look[rigid])
    return look + strength * (driving - reference) @ linear.T
