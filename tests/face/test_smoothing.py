"""Temporal smoothing: edge handling, what passes through unchanged, quad parameters, settings."""

from __future__ import annotations

import numpy as np
import pytest

from stylepuppet.errors import ConfigError
from stylepuppet.face.align import ffhq_quad
from stylepuppet.face.metrics import jitter
from stylepuppet.face.smoothing import (
    NO_SMOOTHING,
    SmoothingSettings,
    as_settings,
    gaussian_smooth,
    quad_params,
    quads_from_params,
    smooth_quads,
    smooth_track,
)


def test_linear_motion_passes_through_including_the_ends() -> None:
    t = np.arange(40, dtype=np.float64)
    ramp = np.stack([3.0 * t + 1, -0.5 * t], axis=1)
    np.testing.assert_allclose(gaussian_smooth(ramp, 3.0), ramp, atol=1e-9)


def test_zero_sigma_and_short_tracks_are_copies() -> None:
    x = np.random.default_rng(0).normal(size=(10, 3))
    out = gaussian_smooth(x, 0.0)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    np.testing.assert_array_equal(gaussian_smooth(x[:1], 2.0), x[:1])


def test_gaussian_matches_the_kernel_in_the_interior() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    sigma = 2.0
    k = np.arange(-8, 9)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    w /= w.sum()
    expected = np.convolve(x, w[::-1], mode="same")
    np.testing.assert_allclose(gaussian_smooth(x, sigma)[20:-20], expected[20:-20], atol=1e-12)


def test_kernel_longer_than_the_track_stays_finite_and_bounded() -> None:
    x = np.array([0.0, 1.0, 0.0, 1.0])
    out = gaussian_smooth(x, 10.0)
    assert np.isfinite(out).all() and out.shape == x.shape


def test_noise_is_reduced() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 2))
    assert gaussian_smooth(x, 2.0).std() < 0.45 * x.std()


def test_quad_params_round_trip_with_rotation_through_pi() -> None:
    angles = np.linspace(3.0, 3.4, 6)  # crosses +pi: unwrapping keeps the angle continuous
    centre = np.stack([np.linspace(0, 5, 6), np.ones(6)], axis=1)
    log_half = np.log(np.linspace(50, 60, 6))
    quads = quads_from_params(centre, log_half, angles)
    c, s, a = quad_params(quads)
    np.testing.assert_allclose(c, centre, atol=1e-9)
    np.testing.assert_allclose(s, log_half, atol=1e-12)
    np.testing.assert_allclose(a, angles, atol=1e-12)
    assert np.all(np.abs(np.diff(a)) < 0.2)


def test_ffhq_quads_are_squares_that_round_trip() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(50, 150, size=(68, 2))
    frames = base + rng.normal(0, 1.0, size=(5, 68, 2))
    quads = ffhq_quad(frames)
    np.testing.assert_allclose(quads_from_params(*quad_params(quads)), quads, atol=1e-9)


def test_smoothing_quads_cuts_wobble_but_keeps_steady_motion() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(120, dtype=np.float64)
    centre = np.stack([100 + 0.8 * t, 120 + 0.1 * t], axis=1)
    steady = quads_from_params(centre, np.full(120, np.log(80.0)), np.full(120, 0.05))
    noisy = steady + rng.normal(0, 0.6, size=steady.shape)
    smoothed = smooth_quads(noisy, 2.0, 6.0)
    assert jitter(smoothed) < jitter(noisy) / 8
    assert np.abs(smoothed - steady).mean() < 0.3
    np.testing.assert_allclose(smooth_quads(steady, 2.0, 6.0), steady, atol=1e-9)
    np.testing.assert_array_equal(smooth_quads(noisy, 0.0, 0.0), noisy)


def test_smooth_track_needs_filled_landmarks() -> None:
    track = np.zeros((3, 68, 2))
    track[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="fill"):
        smooth_track(track, SmoothingSettings())


def test_no_smoothing_gives_raw_quads() -> None:
    rng = np.random.default_rng(5)
    frames = rng.uniform(50, 150, size=(1, 68, 2)) + rng.normal(0, 1, size=(6, 68, 2))
    landmarks, quads = smooth_track(frames, NO_SMOOTHING)
    np.testing.assert_allclose(landmarks, frames)
    np.testing.assert_allclose(quads, ffhq_quad(frames), atol=1e-9)


def test_settings() -> None:
    assert SmoothingSettings.from_strength(1.5) == SmoothingSettings()
    assert SmoothingSettings.from_strength(0) == NO_SMOOTHING
    assert as_settings(3.0) == SmoothingSettings(3.0, 4.0, 12.0)
    custom = SmoothingSettings(1.0, 2.0, 3.0)
    assert as_settings(custom) is custom
    assert custom.as_dict() == {"landmarks": 1.0, "centre": 2.0, "shape": 3.0}
    with pytest.raises(ConfigError, match="landmarks"):
        SmoothingSettings(landmarks=-1.0)
    with pytest.raises(ConfigError, match="shape"):
        SmoothingSettings(shape=float("nan"))
    with pytest.raises(ConfigError, match="strength"):
        SmoothingSettings.from_strength(-0.5)
