"""FFHQ alignment: the quad's formula, transforms and their round trips, the crop, padding, paste-back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image
from scipy.spatial import ConvexHull

from stylepuppet.face.align import (
    FACE_FEATHER,
    FOREHEAD,
    align_crop,
    apply_transform,
    colour_correction,
    face_outline,
    feather_mask,
    ffhq_quad,
    from_aligned,
    invert_transform,
    paste_back,
    polygon_ramp,
    quad_side,
    quad_transform,
    to_aligned,
)
from stylepuppet.face.detect import DlibDetector
from stylepuppet.landmarks.scheme import GROUPS
from stylepuppet.video import load_image


def synthetic_landmarks(eye_y: float = 100.0, eye_x: tuple[float, float] = (80.0, 120.0),
                        mouth_y: float = 150.0) -> np.ndarray:
    """68 points whose eye centres and mouth corners are known; the rest are irrelevant to the quad."""
    p = np.full((68, 2), 7.0)
    ring = np.array([[-4, 0], [-2, -2], [2, -2], [4, 0], [2, 2], [-2, 2]], dtype=np.float64)
    p[36:42] = ring + [eye_x[0], eye_y]
    p[42:48] = ring + [eye_x[1], eye_y]
    p[48] = [85, mouth_y]
    p[54] = [115, mouth_y]
    return p


def ffhq_reference(image: np.ndarray, quad: np.ndarray, output_size: int, transform_size: int) -> np.ndarray:
    """The FFHQ script's steps (shrink, crop, pad/blur/blend in float, QUAD warp, antialiased resize),
    written out straightforwardly as an independent check of align_crop."""
    quad = quad.copy()
    img = Image.fromarray(image)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img.size[0]),
            min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - img.size[0] + border, 0),
           max(hi[1] - img.size[1] + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
        blur = qsize * 0.02
        arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]
    img = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    return np.asarray(img.resize((output_size, output_size), Image.LANCZOS))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def detector() -> DlibDetector:
    return DlibDetector()


@pytest.fixture(scope="module")
def portrait(media_dir: Path, detector: DlibDetector) -> tuple[np.ndarray, np.ndarray]:
    image = load_image(media_dir / "s5.jpg")
    return image, detector.detect(image)[0].points


# ------------------------------------------------------------------------------------------------ the quad


def test_quad_of_known_landmarks() -> None:
    # Eyes at (80, 100) and (120, 100), mouth corners at y = 150: eye_avg (100, 100), eye_to_eye (40, 0),
    # eye_to_mouth (0, 50); x = (40, 0) - flipud((0, 50))·[-1, 1] = (40, 0) - (-50, 0) = (90, 0), length
    # max(2·40, 1.8·50) = 90; y = flipud((90, 0))·[-1, 1] = (0, 90); c = (100, 100) + 0.1·(0, 50) = (100, 105).
    quad = ffhq_quad(synthetic_landmarks())
    expected = np.array([[10, 15], [10, 195], [190, 195], [190, 15]], dtype=np.float64)
    np.testing.assert_allclose(quad, expected, atol=1e-9)
    assert quad_side(quad) == pytest.approx(180.0)


def test_quad_uses_eye_distance_when_the_mouth_is_close() -> None:
    quad = ffhq_quad(synthetic_landmarks(mouth_y=120.0))  # eye_to_mouth 20·1.8 = 36 < eye_to_eye 40·2 = 80
    assert quad_side(quad) == pytest.approx(160.0)


def test_quad_rotates_with_the_face() -> None:
    points = synthetic_landmarks()
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([100.0, 100.0])
    turned = (points - centre) @ rot.T + centre
    np.testing.assert_allclose(ffhq_quad(turned), (ffhq_quad(points) - centre) @ rot.T + centre, atol=1e-9)


def test_quad_is_vectorised_over_frames() -> None:
    frames = np.stack([synthetic_landmarks(eye_y=100 + t) for t in range(5)])
    quads = ffhq_quad(frames)
    assert quads.shape == (5, 4, 2)
    for t in range(5):
        np.testing.assert_allclose(quads[t], ffhq_quad(frames[t]))


# ------------------------------------------------------------------------------------------------ transforms


def test_transform_maps_quad_corners_to_crop_corners() -> None:
    quad = ffhq_quad(synthetic_landmarks())
    corners = apply_transform(quad, quad_transform(quad, 256))
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]], atol=1e-9)


def test_transform_round_trip_and_vectorisation() -> None:
    rng = np.random.default_rng(0)
    frames = np.stack([synthetic_landmarks(eye_y=100 + 3 * t) for t in range(4)]) + rng.normal(0, 1, (4, 68, 2))
    quads = ffhq_quad(frames)
    aligned = to_aligned(frames, quads, 512)
    np.testing.assert_allclose(from_aligned(aligned, quads, 512), frames, atol=1e-9)
    for t in range(4):
        np.testing.assert_allclose(aligned[t], apply_transform(frames[t], quad_transform(quads[t], 512)))
    m = quad_transform(quads[0], 64)
    np.testing.assert_allclose(invert_transform(m) @ m, np.eye(3), atol=1e-12)


# ------------------------------------------------------------------------------------------------ the crop


def test_crop_puts_a_source_dot_where_the_transform_says() -> None:
    image = np.full((300, 300, 3), 40, dtype=np.uint8)
    image[120:123, 140:143] = 255  # a 3x3 dot centred on pixel (141, 121)
    quad = np.array([[60.0, 50.0], [50.0, 230.0], [230.0, 240.0], [240.0, 60.0]])  # rotated square
    size = 90
    crop = align_crop(image, quad, size)
    expected = apply_transform(np.array([[141.0, 121.0]]), crop.transform)[0]
    lum = crop.image[..., 0].astype(np.float64) - 40
    ys, xs = np.mgrid[0:size, 0:size]
    found = np.array([(lum * xs).sum(), (lum * ys).sum()]) / lum.sum()
    np.testing.assert_allclose(found, expected, atol=0.1)


def test_crop_landmarks_land_on_the_face(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    quad = ffhq_quad(points)
    crop = align_crop(image, quad, 256)
    assert crop.image.shape == (256, 256, 3) and crop.image.dtype == np.uint8
    aligned = to_aligned(points, quad, 256)
    # FFHQ places the eyes level, symmetric about the vertical centre line, in the upper half.
    right, left = aligned[36:42].mean(0), aligned[42:48].mean(0)
    assert abs(right[1] - left[1]) < 1.0
    assert (right[0] + left[0]) / 2 == pytest.approx(127.5, abs=6)
    assert 90 < right[1] < 128
    # The dlib landmarks of the crop itself agree with the mapped ones (same face, same place).
    found = DlibDetector().detect(crop.image)[0].points
    iod = np.linalg.norm(left - right)
    assert np.linalg.norm(found - aligned, axis=1).mean() < 0.08 * iod


@pytest.mark.parametrize(("clip", "shift", "size"), [("s5.jpg", 0, 256), ("s5.jpg", 180, 256), ("s1.jpg", 0, 256),
                                                      ("s3.jpg", -150, 128)])
def test_crop_matches_the_ffhq_procedure(media_dir: Path, detector: DlibDetector, clip: str, shift: int,
                                         size: int) -> None:
    """Against a plain re-implementation of the FFHQ steps (warp at 4x + antialiased resize), including
    quads that leave the frame (reflect padding, blur, median blend) and quads that need shrinking."""
    image = load_image(media_dir / clip)
    quad = ffhq_quad(detector.detect(image)[0].points) + [shift, 0]
    ours = align_crop(image, quad, size).image
    reference = ffhq_reference(image, quad, size, 4 * size)
    assert psnr(ours, reference) > 40.0


def test_region_outside_the_frame_is_filled_not_black(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    quad = ffhq_quad(points) + [image.shape[1] * 0.5, 0]  # half the quad off the right edge
    crop = align_crop(image, quad, 128).image
    outside = crop[:, -20:].reshape(-1, 3).astype(np.float64)
    assert outside.mean() > 30  # reflected and faded to the median colour, not zero padding
    # Far from the frame the fill is smooth (blurred), not a sharp mirror image.
    assert np.abs(np.diff(crop[:, -10:].astype(np.float64), axis=0)).mean() < 3.0


def test_quad_entirely_outside_the_frame_still_gives_a_crop() -> None:
    image = np.full((64, 64, 3), 100, dtype=np.uint8)
    quad = np.array([[200.0, 200.0], [200.0, 260.0], [260.0, 260.0], [260.0, 200.0]])
    crop = align_crop(image, quad, 32).image
    assert crop.shape == (32, 32, 3)
    assert np.abs(crop.astype(int) - 100).max() <= 1


def test_bad_arguments() -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    quad = np.array([[0.0, 0.0], [0.0, 9.0], [9.0, 9.0], [9.0, 0.0]])
    with pytest.raises(ValueError, match="uint8 RGB"):
        align_crop(image.astype(np.float32), quad, 8)
    with pytest.raises(ValueError, match="quad"):
        align_crop(image, np.full((4, 2), np.nan), 8)
    with pytest.raises(ValueError, match="68"):
        ffhq_quad(np.zeros((5, 2)))


# ------------------------------------------------------------------------------------------------ paste back


def test_feather_mask_profile() -> None:
    mask = feather_mask(100, 0.1)
    assert mask[50, 50] == 1.0 and mask[0, 50] == pytest.approx(0.05) and mask[50, 99] == pytest.approx(0.05)
    assert mask.min() > 0 and mask.max() == 1.0


def test_paste_back_restores_the_frame(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    quad = ffhq_quad(points)
    crop = align_crop(image, quad, 512)  # finer than the source face: the round trip is near lossless
    restored = paste_back(image, crop.image, crop.transform)
    inner = np.zeros(image.shape[:2], dtype=bool)
    centre = quad.mean(0).astype(int)
    half = int(quad_side(quad) * 0.3)
    inner[centre[1] - half:centre[1] + half, centre[0] - half:centre[0] + half] = True
    diff = np.abs(restored.astype(np.float64) - image.astype(np.float64))
    assert diff[inner].mean() < 3.0


def test_paste_back_composites_inside_the_quad_only(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    quad = ffhq_quad(points)
    crop = align_crop(image, quad, 128)
    white = np.full_like(crop.image, 255)
    out = paste_back(image, white, crop.transform)
    centre = quad.mean(0).astype(int)
    assert (out[centre[1], centre[0]] == 255).all()  # fully replaced inside
    corner = (2, 2)
    assert (out[corner] == image[corner]).all()  # untouched far outside the quad
    # The seam is soft: along a line from the centre outwards the values fall off gradually.
    x = np.arange(centre[0], image.shape[1])
    profile = out[centre[1], x, 0].astype(np.float64) - image[centre[1], x, 0].astype(np.float64)
    ramp = (profile > 5) & (profile < 0.95 * (255 - image[centre[1], x, 0]))
    assert ramp.sum() >= 3


def _face_paste(image: np.ndarray, points: np.ndarray, size: int = 64):
    """The portrait's aligned crop at ``size``, its face outline there, and the outline in the image's pixels."""
    quad = ffhq_quad(points)
    crop = align_crop(image, quad, size)
    outline = face_outline(to_aligned(points, quad, size), GROUPS)
    return crop, outline, apply_transform(outline, invert_transform(crop.transform))


def test_face_outline_is_the_jaw_the_brows_and_the_brows_raised_towards_the_forehead(
        portrait: tuple[np.ndarray, np.ndarray]) -> None:
    points = portrait[1].astype(np.float64)
    outline = face_outline(points, GROUPS)
    brows = points[17:27]
    np.testing.assert_allclose(outline[:17], points[:17])
    np.testing.assert_allclose(outline[17:27], brows)
    lift = outline[27:] - brows
    eyes = (points[36:42].mean(0) + points[42:48].mean(0)) / 2
    np.testing.assert_allclose(lift, np.broadcast_to(FOREHEAD * (eyes - points[48:60].mean(0)), lift.shape))
    assert lift[0, 1] < -0.1 * quad_side(ffhq_quad(points))  # upwards in the upright portrait


def test_polygon_ramp_is_zero_outside_one_deep_inside_and_rises_smoothly() -> None:
    square = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 50.0], [50.0, 10.0]])
    ramp = polygon_ramp((60, 60), square, 8.0)
    assert ramp[:10].max() == 0 and ramp[:, 51:].max() == 0  # outside: exactly 0
    assert ramp[20:41, 20:41].min() == 1.0  # 8 or more pixels inside: exactly 1
    profile = ramp[30, 10:18]
    assert np.all(np.diff(profile) > 0) and 0 < profile[0] < 0.1  # rises monotonically from near 0


def test_colour_correction_of_a_constant_difference_is_that_constant_everywhere() -> None:
    rng = np.random.default_rng(0)
    pasted = rng.uniform(50, 150, (40, 50, 3))
    original = pasted + np.array([12.0, -7.0, 3.0])
    weights = np.zeros((40, 50))
    weights[5:8, 5:45] = 1.0  # only a thin band is seen
    field = colour_correction(original, pasted, weights, 10.0)
    np.testing.assert_allclose(field, np.broadcast_to([12.0, -7.0, 3.0], field.shape), atol=1e-4)


def test_paste_back_of_a_face_leaves_every_pixel_outside_it_exact(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    crop, outline, in_image = _face_paste(image, points)
    other = np.clip(crop.image.astype(int) * [1.2, 0.8, 0.9] + 15, 0, 255).astype(np.uint8)  # another face
    out = paste_back(image, other, crop.transform, outline=outline, match_colour=True)
    outside = polygon_ramp(image.shape[:2], in_image, 1.0) == 0
    assert outside.sum() > 0.5 * outside.size
    assert np.array_equal(out[outside], image[outside])  # pixel-exact away from the face
    size = float(np.sqrt(ConvexHull(in_image).volume))  # the face's size as paste_back measures it
    deep = polygon_ramp(image.shape[:2], in_image, 1.5 * FACE_FEATHER * size) == 1
    assert np.abs(out[deep].astype(int) - image[deep]).mean() > 5  # the face itself is replaced


def test_paste_back_matches_the_colour_at_the_seam(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    crop, outline, in_image = _face_paste(image, points)
    tinted = np.clip(crop.image.astype(int) + [40, -25, -25], 0, 255).astype(np.uint8)  # warmer skin than the frame
    plain = paste_back(image, tinted, crop.transform, outline=outline)
    matched = paste_back(image, tinted, crop.transform, outline=outline, match_colour=True)
    ramp = polygon_ramp(image.shape[:2], in_image, 1.0)
    width = FACE_FEATHER * np.sqrt((ramp > 0).sum())
    edge = polygon_ramp(image.shape[:2], in_image, width)
    seam = (edge > 0) & (edge < 0.5)  # the outer half of the soft edge, where a step would show
    step = lambda out: np.abs(out[seam].astype(float).mean(0) - image[seam].astype(float).mean(0)).max()  # noqa: E731
    assert step(plain) > 5 and step(matched) < 0.25 * step(plain)


def test_paste_back_never_blackens_what_the_crop_does_not_reach(portrait: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = portrait
    quad = ffhq_quad(points)
    left = int(np.floor(quad[:, 0].min())) + int(quad_side(quad) * 0.35)  # the frame cuts through the face
    frame = np.ascontiguousarray(image[:, left:])
    moved = points - [left, 0]
    quad = ffhq_quad(moved)
    crop = align_crop(frame, quad, 64)
    outline = face_outline(to_aligned(moved, quad, 64), GROUPS) * 1.6 - 20  # reaches past the crop's square too
    white = np.full_like(crop.image, 255)
    out = paste_back(frame, white, crop.transform, outline=outline)
    assert (out.astype(int) >= frame.astype(int)).all()  # only ever blended towards the white face, never black
    covered = paste_back(np.zeros_like(frame), white, crop.transform, outline=outline) > 0
    assert np.array_equal(out[~covered], frame[~covered])
