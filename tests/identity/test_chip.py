"""The differentiable face chip against dlib's get_face_chip on real faces: geometry, pixels, descriptors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylepuppet.identity.chip import (
    JITTER_ROTATION,
    JITTER_SHIFT,
    JITTER_ZOOM,
    bilinear,
    chip_grid,
    chip_transforms,
    face_chips,
    jitter_transforms,
    pyramid_down,
    sampling,
    similarity,
)

dlib = pytest.importorskip("dlib")


def image_tensor(image: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(dtype)


def points(face, which: str) -> torch.Tensor:
    return torch.from_numpy(face.points(getattr(face, which)))[None]


def dlib_rounded_chip(image: np.ndarray, landmarks: torch.Tensor) -> np.ndarray:
    """The chip from this module's pieces with dlib's two roundings put back (after each pyramid step and
    after sampling): must equal dlib's chip exactly if the geometry is dlib's."""
    plan = sampling(chip_transforms(landmarks)[0], image.shape[0], image.shape[1])
    x0, y0, x1, y1 = plan.box
    source = image_tensor(image, torch.float64)[:, :, y0:y1 + 1, x0:x1 + 1]
    for _ in range(plan.levels):
        source = torch.floor(pyramid_down(source))
    return torch.floor(bilinear(source[0], *chip_grid(plan.affine))).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("which", ["shape68", "shape5"])
def test_framing_is_dlibs_chip_details(real_faces, which) -> None:
    for face in real_faces:
        details = dlib.get_face_chip_details(getattr(face, which), 150, 0.25)
        transform = chip_transforms(points(face, which))[0]
        scale = math.hypot(transform[0, 0], transform[1, 0])
        centre = transform[:, :2] @ torch.tensor([75.0, 75.0], dtype=torch.float64) + transform[:, 2]
        assert math.atan2(transform[1, 0], transform[0, 0]) == pytest.approx(details.angle, abs=1e-9), face.label
        assert 150 * scale == pytest.approx(details.rect.width(), rel=1e-9), face.label
        rect = details.rect
        assert centre.tolist() == pytest.approx([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2],
                                                abs=1e-6), face.label


@pytest.mark.parametrize("which", ["shape68", "shape5"])
def test_geometry_reproduces_dlibs_chip_pixel_for_pixel(real_faces, which) -> None:
    levels = set()
    for face in real_faces:
        ours = dlib_rounded_chip(face.image, points(face, which))
        theirs = dlib.get_face_chip(face.image, getattr(face, which), size=150, padding=0.25)
        levels.add(sampling(chip_transforms(points(face, which))[0], *face.image.shape[:2]).levels)
        np.testing.assert_array_equal(ours, theirs, err_msg=face.label)
    assert levels >= {0, 1}, "the faces must exercise dlib's pyramid step and its absence"


def test_differentiable_chip_is_within_two_grey_levels_of_dlibs(real_faces) -> None:
    worst, bias = 0.0, []
    for face in real_faces:
        for which in ("shape68", "shape5"):
            chip = face_chips(image_tensor(face.image), points(face, which).float())[0].permute(1, 2, 0).numpy()
            theirs = dlib.get_face_chip(face.image, getattr(face, which), size=150, padding=0.25)
            diff = chip - theirs
            worst = max(worst, float(np.abs(diff).max()))
            bias.append(float(diff.mean()))
    print(f"\nchip − dlib chip: worst {worst:.2f} grey levels, mean {min(bias):.2f}…{max(bias):.2f} "
          "(dlib rounds down once, or twice with its pyramid step)")
    assert worst <= 2.0
    assert min(bias) >= 0 and max(bias) <= 1.0


def test_similarity_recovers_a_known_transform() -> None:
    src = torch.rand(3, 10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 100
    angle, scale, shift = torch.tensor([0.3, -1.0, 2.5]), torch.tensor([0.5, 2.0, 3.0]), torch.tensor([[4.0, -2.0]])
    rot = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    m = (rot * scale[:, None, None]).double()
    dst = src @ m.transpose(1, 2) + shift.double()
    found = similarity(src, dst)
    torch.testing.assert_close(found[:, :, :2], m)
    torch.testing.assert_close(found[:, :, 2], shift.double().expand(3, 2))


def test_jittered_framings_stay_within_dlibs_jitter(real_faces) -> None:
    base = chip_transforms(torch.cat([points(f, "shape68") for f in real_faces[:3]]))
    jittered = jitter_transforms(base, 50, torch.Generator().manual_seed(0)).view(50, 3, 2, 3)
    centre = torch.tensor([75.0, 75.0], dtype=torch.float64)
    for j in jittered:
        turn = torch.atan2(j[:, 1, 0], j[:, 0, 0]) - torch.atan2(base[:, 1, 0], base[:, 0, 0])
        zoom = torch.hypot(j[:, 0, 0], j[:, 1, 0]) / torch.hypot(base[:, 0, 0], base[:, 1, 0])
        moved = (j[:, :, :2] @ centre + j[:, :, 2]) - (base[:, :, :2] @ centre + base[:, :, 2])
        in_chip = moved.norm(dim=1) / torch.hypot(base[:, 0, 0], base[:, 1, 0])  # chip pixels
        assert (turn.abs() <= JITTER_ROTATION + 1e-12).all()
        assert ((zoom >= 1 - 1e-12) & (zoom <= JITTER_ZOOM + 1e-12)).all()
        assert (in_chip <= JITTER_SHIFT * 150 * math.sqrt(2) + 1e-9).all()
    again = jitter_transforms(base, 50, torch.Generator().manual_seed(0)).view(50, 3, 2, 3)
    torch.testing.assert_close(again, jittered)


def test_jitter_and_mirror_layout(real_faces) -> None:
    faces = [f for f in real_faces if f.label.startswith("d0.mp4")]  # two frames of one 512² clip
    images = torch.cat([image_tensor(f.image) for f in faces]) / 255
    landmarks = torch.cat([points(f, "shape68") for f in faces]).float()
    plain = face_chips(images, landmarks)
    chips = face_chips(images, landmarks, jitter=3, generator=torch.Generator().manual_seed(1), mirror=True)
    assert plain.shape == (2, 3, 150, 150) and chips.shape == (12, 3, 150, 150)
    torch.testing.assert_close(chips[6:], chips[:6].flip(-1))
    assert (chips[:6] - plain.repeat(3, 1, 1, 1)).abs().mean() > 0.01  # jittered framings differ from dlib's


def test_chip_is_differentiable_in_image_and_landmarks(real_faces) -> None:
    face = real_faces[3]
    image = (image_tensor(face.image) / 255).requires_grad_(True)
    landmarks = points(face, "shape68").float().requires_grad_(True)
    chip = face_chips(image, landmarks, jitter=1, generator=torch.Generator().manual_seed(0))
    (chip * torch.linspace(0, 1, 150)).sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert torch.isfinite(landmarks.grad).all() and landmarks.grad.abs().sum() > 0


def test_face_outside_the_image_is_a_clear_error(real_faces) -> None:
    face = real_faces[3]
    with pytest.raises(ValueError, match="outside the 512×512 image"):
        face_chips(image_tensor(face.image), points(face, "shape68").float() + 2000)
