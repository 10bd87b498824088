"""Numbers that say how steady a face track is: quad jitter and landmark lag.

jitter: frame-to-frame wobble of the alignment quads. For each interior frame t and each corner,
|q_t - (q_{t-1} + q_{t+1}) / 2| (the distance of the corner from the midpoint of its neighbours in
time, i.e. half the discrete second difference) divided by the quad's side; averaged over the four
corners and over the interior frames. Steady motion (constant velocity) scores 0, so a head that
turns smoothly is not counted as jitter.

lag: how far smoothing moved the landmarks away from what the detector saw: the mean distance
between smoothed and raw landmarks in detected frames, divided by that frame's inter-ocular
distance (between the two eye centres), averaged over points and frames.
"""

from __future__ import annotations

import numpy as np

from stylepuppet.landmarks.scheme import eye_centres


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """Distance between the two eye centres of landmark sets [..., 68, 2] -> [...]."""
    right, left = eye_centres(np.asarray(points, dtype=np.float64))
    return np.linalg.norm(left - right, axis=-1)


def quad_side(quads: np.ndarray) -> np.ndarray:
    """Mean side length of quads [..., 4, 2] -> [...] (all four sides; equal for an FFHQ square)."""
    quads = np.asarray(quads, dtype=np.float64)
    edges = quads - np.roll(quads, 1, axis=-2)
    return np.linalg.norm(edges, axis=-1).mean(axis=-1)


def jitter(quads: np.ndarray) -> float:
    """Mean corner distance from the midpoint of its neighbours in time, over the quad side (see module doc).

    quads: [T, 4, 2]; fewer than 3 frames have no interior frame and give 0.
    """
    quads = np.asarray(quads, dtype=np.float64)
    if quads.ndim != 3 or quads.shape[1:] != (4, 2):
        raise ValueError(f"quads must be [T, 4, 2], got {quads.shape}")
    if quads.shape[0] < 3:
        return 0.0
    mid = 0.5 * (quads[:-2] + quads[2:])
    wobble = np.linalg.norm(quads[1:-1] - mid, axis=-1).mean(axis=-1)
    return float(np.mean(wobble / quad_side(quads[1:-1])))


def lag(smoothed: np.ndarray, raw: np.ndarray, detected: np.ndarray | None = None) -> float:
    """Mean smoothed-to-raw landmark distance over the inter-ocular distance, in detected frames only.

    smoothed, raw: [T, 68, 2]; detected: [T] bool (default: frames where raw is finite). 0 when none.
    """
    smoothed = np.asarray(smoothed, dtype=np.float64)
    raw = np.asarray(raw, dtype=np.float64)
    if smoothed.shape != raw.shape or raw.ndim != 3:
        raise ValueError(f"smoothed and raw must both be [T, P, 2], got {smoothed.shape} and {raw.shape}")
    if detected is None:
        detected = np.isfinite(raw).all(axis=(1, 2))
    detected = np.asarray(detected, dtype=bool)
    if not detected.any():
        return 0.0
    dist = np.linalg.norm(smoothed[detected] - raw[detected], axis=-1).mean(axis=-1)
    return float(np.mean(dist / inter_ocular(raw[detected])))
