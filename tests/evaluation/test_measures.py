import math

import numpy as np
import pytest

from stylepuppet.evaluation.measures import descriptor_distances, jitter_series, landmark_jitter, mouth_ratio, pearson


def _face(gap: float = 2.0, width: float = 20.0) -> np.ndarray:
    """68 points: eye centres 40 px apart, inner mouth corners ``width`` apart, inner lips ``gap`` apart."""
    pts = np.zeros((68, 2))
    pts[36:42] = [30.0, 40.0]
    pts[42:48] = [70.0, 40.0]
    pts[60], pts[64] = [50 - width / 2, 80], [50 + width / 2, 80]
    for top, bottom, x in ((61, 67, 45.0), (62, 66, 50.0), (63, 65, 55.0)):
        pts[top], pts[bottom] = [x, 80 - gap / 2], [x, 80 + gap / 2]
    return pts


def test_mouth_ratio_is_gap_over_width_and_scale_free():
    assert mouth_ratio(_face(gap=4, width=20)) == pytest.approx(0.2)
    pts = np.stack([_face(gap=4, width=20), _face(gap=4, width=20) * 3 + 7])
    assert np.allclose(mouth_ratio(pts), 0.2)
    pts[1] = np.nan
    assert np.isnan(mouth_ratio(pts)[1])
    with pytest.raises(ValueError, match="68, 2"):
        mouth_ratio(np.zeros((5, 2)))


def test_pearson_matches_numpy_and_skips_missing():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20), rng.normal(size=20)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    a2, b2 = a.copy(), b.copy()
    a2[3], b2[7] = np.nan, np.nan
    keep = np.ones(20, bool)
    keep[[3, 7]] = False
    assert pearson(a2, b2) == pytest.approx(np.corrcoef(a[keep], b[keep])[0, 1])
    assert math.isnan(pearson(np.ones(5), np.arange(5.0)))
    assert math.isnan(pearson(np.array([1.0, np.nan]), np.array([1.0, 2.0])))


def test_jitter_ignores_smooth_motion_and_measures_shaking():
    base = _face()
    steady = np.stack([base + [2.0 * t, -1.0 * t] for t in range(10)])  # constant velocity
    assert landmark_jitter(steady) == pytest.approx(0.0, abs=1e-12)
    shake = np.stack([base + [0.0, 2.0 * (t % 2)] for t in range(10)])  # up 2 px every other frame
    # interior frames sit 2 px from the midpoint of their neighbours; inter-ocular distance 40
    assert landmark_jitter(shake) == pytest.approx(2.0 / 40.0)
    shake[4] = np.nan  # frames 3, 4, 5 lose their triple
    assert landmark_jitter(shake) == pytest.approx(2.0 / 40.0)
    assert math.isnan(landmark_jitter(steady[:2]))


def test_descriptor_distances():
    d = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    assert np.allclose(descriptor_distances(d), [0, 5, 1])
    assert np.allclose(descriptor_distances(d, reference=2), [1, np.hypot(3, 3), 0])


def test_jitter_series_is_the_per_frame_form_of_the_mean():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(6, 68, 2)) + np.linspace(0, 40, 68)[:, None]
    series = jitter_series(points)
    assert np.isnan(series[[0, -1]]).all() and np.isfinite(series[1:-1]).all()
    t = 2
    wobble = np.linalg.norm(points[t] - (points[t - 1] + points[t + 1]) / 2, axis=-1).mean()
    eyes = np.linalg.norm(points[t, 42:48].mean(0) - points[t, 36:42].mean(0))
    assert series[t] == pytest.approx(wobble / eyes)
    assert np.isnan(mouth_ratio(np.full((68, 2), np.nan)))
