"""Pure measures on 68-point landmark sequences and face descriptors (numpy, no networks).

Missing frames are rows of NaN; every measure skips them and says how many frames it used.
"""

from __future__ import annotations

import numpy as np

from stylepuppet.face.metrics import inter_ocular

#: Inner-lip pairs whose gaps measure how open the mouth is (iBUG 0-based: 61-67, 62-66, 63-65).
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
#: Inner mouth corners; their distance normalises the gap so the ratio does not depend on face size.
MOUTH_CORNERS = (60, 64)
#: dlib's documented same-person threshold on face-descriptor distance.
SAME_PERSON_DISTANCE = 0.6


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2:] != (68, 2):
        raise ValueError(f"points must be [..., 68, 2], got {points.shape}")
    return points


def mouth_ratio(points: np.ndarray) -> np.ndarray:
    """Mouth opening [...]: mean inner-lip gap (61-67, 62-66, 63-65) over mouth width (60-64).

    Scale-free, so driver and output compare despite different face sizes; NaN where points are NaN.
    """
    points = _check_points(points)
    gap = np.mean([np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1) for a, b in INNER_LIP_PAIRS], axis=0)
    width = np.linalg.norm(points[..., MOUTH_CORNERS[0], :] - points[..., MOUTH_CORNERS[1], :], axis=-1)
    return gap / width


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two series over the entries where both are finite (NaN if < 3 or constant)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"series must be 1-D and of equal length, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a = a[ok] - a[ok].mean()
    b = b[ok] - b[ok].mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def jitter_series(points: np.ndarray) -> np.ndarray:
    """Per-frame wobble [T] of landmarks [T, 68, 2], in units of the face's inter-ocular distance.

    Frame t scores the mean over points of ``|p[t] - (p[t-1] + p[t+1]) / 2|`` (half the second
    difference, as the face track's quad jitter) over its eye-centre distance; the first and last
    frames, and frames whose own or neighbours' points are missing, are NaN. A steady face or a
    constant-velocity motion scores 0, so this separates shaking from the intended motion (plain
    frame differences would count both).
    """
    points = _check_points(points)
    if points.ndim != 3:
        raise ValueError(f"points must be [T, 68, 2], got {points.shape}")
    series = np.full(points.shape[0], np.nan)
    if points.shape[0] >= 3:
        wobble = np.linalg.norm(points[1:-1] - 0.5 * (points[:-2] + points[2:]), axis=-1).mean(axis=-1)
        series[1:-1] = wobble / inter_ocular(points[1:-1])
    return series


def landmark_jitter(points: np.ndarray) -> float:
    """Mean of :func:`jitter_series` over the frames that have a value (NaN if none)."""
    series = jitter_series(points)
    series = series[np.isfinite(series)]
    return float(series.mean()) if series.size else float("nan")


def descriptor_distances(descriptors: np.ndarray, reference: int = 0) -> np.ndarray:
    """Euclidean distance [T] of each face descriptor [T, D] to the one of frame ``reference``."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    if descriptors.ndim != 2:
        raise ValueError(f"descriptors must be [T, D], got {descriptors.shape}")
    return np.linalg.norm(descriptors - descriptors[reference], axis=-1)
