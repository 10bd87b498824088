"""Landmark backends: faces and points on real portraits, region search, sub-pixel fit, FAN framing, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylepuppet.errors import ConfigError, NoFaceError, WeightsError
from stylepuppet.face.detect import (
    DlibDetector,
    Face,
    FanDetector,
    LandmarkDetector,
    box_iou,
    detect_image,
    make_detector,
    predictor_path,
)
from stylepuppet.landmarks.fan import untrained_fan
from stylepuppet.landmarks.net import landmarks_in_image
from stylepuppet.video import load_image


@pytest.fixture(scope="module")
def dlib_detector() -> DlibDetector:
    return DlibDetector()


@pytest.mark.parametrize("name", ["s1.jpg", "s3.jpg", "s5.jpg"])
def test_portraits_give_one_face_with_points_in_its_box(media_dir: Path, dlib_detector: DlibDetector,
                                                         name: str) -> None:
    image = load_image(media_dir / name)
    faces = dlib_detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face) and face.score > 0
    assert face.box.shape == (4,) and face.points.shape == (68, 2) and face.points.dtype == np.float32
    x1, y1, x2, y2 = face.box
    w = x2 - x1
    inside = ((face.points[:, 0] > x1 - 0.2 * w) & (face.points[:, 0] < x2 + 0.2 * w)
              & (face.points[:, 1] > y1 - 0.2 * w) & (face.points[:, 1] < y2 + 0.3 * w))
    assert inside.all()
    # Anatomy: the subject's right eye is on the image left, the mouth below the nose below the eyes.
    right_eye, left_eye = face.points[36:42].mean(0), face.points[42:48].mean(0)
    assert right_eye[0] < left_eye[0]
    assert face.points[30, 1] > right_eye[1] and face.points[62, 1] > face.points[30, 1]


def test_small_face_needs_upsampling(media_dir: Path) -> None:
    image = load_image(media_dir / "s0.jpg")  # a painting with a small face
    small = np.asarray(Image.fromarray(image).resize((image.shape[1] // 2, image.shape[0] // 2)))
    assert DlibDetector().detect(small) == []
    faces = DlibDetector(upsample=1).detect(small)
    assert len(faces) == 1


def test_region_search_finds_the_face_near_a_hint(media_dir: Path, dlib_detector: DlibDetector) -> None:
    image = load_image(media_dir / "s5.jpg")
    whole = dlib_detector.find_boxes(image)[0]
    near = dlib_detector.find_boxes(image, region=whole.box + 5)
    assert len(near) == 1 and box_iou(near[0].box, whole.box) > 0.7
    far = np.array([0.0, 0.0, 120.0, 120.0])  # a window in the corner holds no face
    assert dlib_detector.find_boxes(image, region=far) == []


def test_fit_is_sub_pixel_and_agrees_with_the_plain_predictor(media_dir: Path) -> None:
    image = load_image(media_dir / "s3.jpg")  # face ~107 px: fitted on a ~4x window
    fine = DlibDetector(fit_face_px=400)
    plain = DlibDetector(fit_face_px=1)
    box = fine.find_boxes(image)[0].box
    a, b = fine.fit(image, box), plain.fit(image, box)
    assert np.any(np.abs(a - np.round(a)) > 0.01)  # dlib alone returns whole pixels
    np.testing.assert_array_equal(b, np.round(b))
    iod = np.linalg.norm(b[42:48].mean(0) - b[36:42].mean(0))
    assert np.linalg.norm(a - b, axis=1).mean() < 0.06 * iod


def test_fan_backend_frames_the_box_like_face_alignment(media_dir: Path) -> None:
    """FanDetector feeds FAN only a patch around the face; the points equal those from the whole frame."""
    torch.manual_seed(0)
    net = untrained_fan("tiny")
    detector = make_detector("fan", weights=net)
    assert isinstance(detector, FanDetector) and detector.name == "fan"
    image = load_image(media_dir / "s5.jpg")
    box = detector.find_boxes(image)[0].box
    points = detector.fit(image, box)
    whole = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = landmarks_in_image(net, whole, torch.tensor(box[None], dtype=torch.float32))[0].numpy()
    np.testing.assert_allclose(points, expected, atol=1e-3)
    assert points.shape == (68, 2) and points.dtype == np.float32


def test_make_detector_and_protocol() -> None:
    detector = make_detector("dlib", upsample=1)
    assert isinstance(detector, DlibDetector) and isinstance(detector, LandmarkDetector)
    assert detector.upsample == 1
    with pytest.raises(ConfigError, match="unknown landmark backend 'mesh'; choose one of: dlib, fan"):
        make_detector("mesh")
    with pytest.raises(ConfigError, match="upsample"):
        make_detector("dlib", upsample=-1)


def test_missing_predictor_and_fan_weights(tmp_path: Path) -> None:
    assert predictor_path().name == "shape_predictor_68_face_landmarks.dat"
    with pytest.raises(WeightsError, match="does not exist"):
        DlibDetector(predictor=tmp_path / "missing.dat")
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="cannot load"):
        DlibDetector(predictor=bad)
    with pytest.raises(WeightsError):
        FanDetector(weights=str(bad))


def test_no_face_and_bad_images(dlib_detector: DlibDetector) -> None:
    grey = np.full((200, 200, 3), 128, dtype=np.uint8)
    assert dlib_detector.detect(grey) == []
    with pytest.raises(NoFaceError, match="the look image x.png"):
        detect_image(grey, dlib_detector, what="the look image x.png")
    with pytest.raises(ValueError, match="uint8 RGB"):
        dlib_detector.detect(grey[..., 0])
