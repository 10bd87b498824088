"""dlib's face chip for its face-recognition network, as a differentiable torch function.

``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` (and ``compute_face_descriptor(img, shape)``)
frame a face in four steps (``get_face_chip_details`` and ``extract_image_chips`` in
``dlib/image_transforms/interpolation.h``), reproduced here:

1. A least-squares similarity (Umeyama) maps dlib's mean-face template — points 27–54 and 60–64 of the
   68 (the brows and the lower lip are left out), or the 5-point template — placed in a ``size``² chip
   with ``padding`` on each side, onto the landmarks.
2. That gives a rotated square: its centre is the image of the chip centre (size/2, size/2), its side
   ``size·scale``; chip pixel (0, 0) lands on its top-left corner and pixel (size − 1, 0) on its top-right
   (so the step between chip pixels is (size·scale − 1)/(size − 1) image pixels).
3. When that square shrinks by more than 2× (its half-size area still exceeds size²) the image, cropped
   to the square's bounding box grown by a margin, is first reduced by dlib's ``pyramid_down<2>`` (a
   5×5 binomial filter [1 4 6 4 1]²/256, every second pixel) as many times as needed, and the square is
   mapped onto the reduced image with dlib's own ``p/2 − (1.25, 0.75)`` rule.
4. Bilinear sampling; a chip pixel whose 2×2 neighbourhood leaves the (cropped) image is black.

dlib rounds down to integers after steps 3 and 4; this version keeps floats so it stays differentiable
(measured on real faces: within a grey level or two of dlib's chip, see the tests). Discrete choices
(pyramid depth, crop box) are taken from the detached geometry, as dlib takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

CHIP_SIZE = 150
CHIP_PADDING = 0.25

#: dlib's mean face shape for iBUG points 17–67 in a unit square (``get_face_chip_details`` in
#: ``dlib/image_transforms/interpolation.h``, Boost Software License 1.0), x then y.
_MEAN_FACE_17_67 = np.array([
    [0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004,
     0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
     0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751,
     0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
     0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127,
     0.42689],
    [0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915, 0.106454,
     0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326, 0.216423,
     0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077,
     0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805, 0.902192,
     0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803,
     0.824182],
]).T
#: The 68 points dlib aligns on: nose, eyes, outer upper lip and inner upper lip (27–54, 60–64).
ALIGN_68 = np.array([*range(27, 55), *range(60, 65)])
#: dlib's 5-point template (shape_predictor_5_face_landmarks order: eye corners, then the nose base).
_MEAN_FACE_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                         [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                         [0.4901123135679, 0.6277975316475]])

#: dlib's ``jitter_image`` amplitudes: shift up to 2 % of the chip, rotation up to 3°, zoom out up to 1/0.97.
JITTER_SHIFT = 0.02
JITTER_ROTATION = math.radians(3.0)
JITTER_ZOOM = 1 / 0.97


def template(num_points: int, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(landmark indices, their template positions [P, 2] in chip coordinates) for 68 or 5 landmarks."""
    if num_points == 68:
        indices, unit = ALIGN_68, _MEAN_FACE_17_67[ALIGN_68 - 17]
    elif num_points == 5:
        indices, unit = np.arange(5), _MEAN_FACE_5
    else:
        raise ValueError(f"dlib frames faces from 68 or 5 landmarks, got {num_points}")
    return indices, (padding + unit) / (2 * padding + 1) * size


def similarity(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity [N, 2, 3] (rotation, uniform scale, shift) taking points src [N,P,2] to dst.

    In complex numbers the optimum is w = Σ conj(s)·d / Σ|s|² over centred points: the same as Umeyama's
    solution (dlib's ``find_similarity_transform``) whenever it is a rotation, i.e. for any real face.
    """
    src_mean, dst_mean = src.mean(dim=1, keepdim=True), dst.mean(dim=1, keepdim=True)
    s, d = src - src_mean, dst - dst_mean
    norm = (s ** 2).sum(dim=(1, 2))
    a = (s * d).sum(dim=(1, 2)) / norm
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(dim=1) / norm
    m = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    t = dst_mean[:, 0] - (m @ src_mean[:, 0, :, None])[..., 0]
    return torch.cat([m, t[..., None]], dim=-1)


def chip_transforms(landmarks: Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> Tensor:
    """dlib's similarity [N, 2, 3] from chip template coordinates to image pixels, for landmarks [N, 68|5, 2]."""
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be [N, 68, 2] or [N, 5, 2], got {tuple(landmarks.shape)}")
    indices, chip_points = template(landmarks.shape[1], size, padding)
    dtype = landmarks.dtype if landmarks.dtype.is_floating_point else torch.float64
    src = torch.as_tensor(chip_points, dtype=dtype, device=landmarks.device).expand(landmarks.shape[0], -1, -1)
    return similarity(src, landmarks[:, torch.as_tensor(indices, device=landmarks.device)].to(dtype))


def jitter_transforms(transforms: Tensor, count: int, generator: torch.Generator | None,
                      size: int = CHIP_SIZE) -> Tensor:
    """``count`` random perturbations [count·N, 2, 3] (jitter-major) of each chip transform, of dlib's
    ``jitter_image`` size: the chip moved by up to ±2 %, turned by up to ±3°, zoomed out by up to 3 %."""
    n = transforms.shape[0]
    u = torch.rand(count, n, 4, generator=generator, dtype=torch.float64).to(transforms)
    angle = (2 * u[..., 0] - 1) * JITTER_ROTATION
    zoom = 1 + u[..., 1] * (JITTER_ZOOM - 1)
    shift = (2 * u[..., 2:] - 1) * JITTER_SHIFT * size
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [count, N, 2, 2]
    centre = torch.full((2,), size / 2, dtype=transforms.dtype, device=transforms.device)
    # chip point p ↦ centre + rot·(p − centre) + shift, then the face's own transform
    offset = centre - (rot @ centre) + shift
    m = transforms[None, :, :, :2]
    jittered = torch.cat([m @ rot, (m @ offset[..., None])[..., 0:1] + transforms[None, :, :, 2:]], dim=-1)
    return jittered.reshape(count * n, 2, 3)


@dataclass(frozen=True)
class Sampling:
    """Where one chip's pixels come from: the crop box (x0, y0, x1, y1, inclusive) of the image, how many
    times the crop is reduced by ``pyramid_down`` first, and the affine [2, 3] from chip pixel (x, y) to
    pixel coordinates of that reduced crop."""

    box: tuple[int, int, int, int]
    levels: int
    affine: Tensor


#: ``pyramid_down<2>::point_down``: p ↦ p/2 − (1.25, 0.75) (dlib's mapping onto a reduced image).
_DOWN_SHIFT = (1.25, 0.75)


def _pyramid_levels(side: float, size: int) -> int:
    """How many times dlib halves the image before sampling a chip of ``side`` image pixels: while the
    chip's square, halved once more, still covers more than size² pixels (drectangle area = (w + 1)²)."""
    levels, width = 0, side - 1  # right − left of the square
    while (width / 2 + 1) ** 2 > size * size:
        width /= 2
        levels += 1
    return levels


def sampling(transform: Tensor, height: int, width: int, size: int = CHIP_SIZE) -> Sampling:
    """How dlib's ``extract_image_chips`` samples the chip of ``transform`` [2, 3] from an image H×W."""
    m, t = transform[:, :2], transform[:, 2]
    angle = torch.atan2(m[1, 0], m[0, 0])
    scale = torch.hypot(m[0, 0], m[1, 0])
    centre = m @ torch.full((2,), size / 2, dtype=m.dtype, device=m.device) + t
    half = (size * scale - 1) / 2  # centered_drect(centre, size·scale, size·scale)
    rot = torch.stack([torch.stack([torch.cos(angle), -torch.sin(angle)]),
                       torch.stack([torch.sin(angle), torch.cos(angle)])])
    corners = torch.stack([torch.stack([-half, -half]), torch.stack([half, -half]),
                           torch.stack([-half, half]), torch.stack([half, half])])  # tl, tr, bl, br − centre
    levels = _pyramid_levels(float(size * scale.detach()), size)
    grow = 2.0
    for _ in range(levels):
        grow = grow * 2 + 2  # dlib's margin round the crop: 2 px, doubled (+2) per pyramid level
    rotated = (corners @ rot.T + centre).detach().double().cpu().numpy()
    lo = np.maximum(rotated.min(0) - grow, 0)
    hi = np.minimum(rotated.max(0) + grow, [width - 1, height - 1])
    box = tuple(int(v) for v in np.floor(np.concatenate([lo, hi]) + 0.5))  # std::lround (non-negative)
    # the square in the crop, then in each reduced crop: its corners give the chip's affine
    c = centre - torch.tensor(box[:2], dtype=centre.dtype, device=centre.device)
    shift = torch.tensor(_DOWN_SHIFT, dtype=centre.dtype, device=centre.device)
    for _ in range(levels):
        c = c / 2 - shift
    tl, tr, bl = corners[:3] @ rot.T / 2 ** levels + c
    affine = torch.stack([(tr - tl) / (size - 1), (bl - tl) / (size - 1), tl], dim=-1)
    return Sampling(box, levels, affine)


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])


def pyramid_down(images: Tensor) -> Tensor:
    """dlib's ``pyramid_down<2>`` of [N, C, H, W] without its rounding: output pixel (r, c) is the
    [1 4 6 4 1]²/256 mean of input rows 2r…2r+4 and columns 2c…2c+4 ([N, C, (H−3)//2, (W−3)//2])."""
    c = images.shape[1]
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :] / 256).to(images)
    return F.conv2d(images, kernel.expand(c, 1, 5, 5), stride=2, groups=c)


def bilinear(image: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """dlib's ``interpolate_bilinear`` of image [C, H, W] at points x, y [...]: zero where the 2×2
    neighbourhood is not inside the image. Returns [C, ...]."""
    h, w = image.shape[-2:]
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    fx, fy = (x - x0).to(image.dtype), (y - y0).to(image.dtype)
    left, top = x0.long().clamp(0, max(w - 2, 0)), y0.long().clamp(0, max(h - 2, 0))
    right, bottom = (left + 1).clamp(max=w - 1), (top + 1).clamp(max=h - 1)
    tl, tr = image[:, top, left], image[:, top, right]
    bl, br = image[:, bottom, left], image[:, bottom, right]
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    return value * inside.to(image.dtype)


def chip_grid(affine: Tensor, size: int = CHIP_SIZE) -> tuple[Tensor, Tensor]:
    """Source coordinates x, y [size, size] of every chip pixel under ``affine`` [2, 3]."""
    grid = torch.arange(size, dtype=affine.dtype, device=affine.device)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    return (affine[0, 0] * gx + affine[0, 1] * gy + affine[0, 2],
            affine[1, 0] * gx + affine[1, 1] * gy + affine[1, 2])


def extract_chip(image: Tensor, transform: Tensor, size: int = CHIP_SIZE) -> Tensor:
    """The chip [C, size, size] of one image [C, H, W] for a chip transform [2, 3], as dlib samples it."""
    plan = sampling(transform, image.shape[-2], image.shape[-1], size)
    x0, y0, x1, y1 = plan.box
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise ValueError(f"the face's chip lies outside the {image.shape[-2]}×{image.shape[-1]} image "
                         f"(crop {plan.box})")
    source = image[None, :, y0:y1 + 1, x0:x1 + 1]
    for _ in range(plan.levels):
        source = pyramid_down(source)
    return bilinear(source[0], *chip_grid(plan.affine, size))


def face_chips(images: Tensor, landmarks: Tensor, *, jitter: int = 0, generator: torch.Generator | None = None,
               mirror: bool = False, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> Tensor:
    """dlib's face chips of images [N, C, H, W] (any value range) with landmarks [N, 68|5, 2] in pixels.

    Returns [F·N, C, size, size], framing-major: F = 1 (dlib's own framing) or, with ``jitter`` > 0, that
    many randomly perturbed framings per face (:func:`jitter_transforms`); ``mirror`` appends the
    left-right mirror of every chip (F doubles). Differentiable in the images and the landmarks.
    """
    if images.ndim != 4 or landmarks.shape[0] != images.shape[0]:
        raise ValueError(f"images [N, C, H, W] and landmarks [N, P, 2] must agree, got {tuple(images.shape)} "
                         f"and {tuple(landmarks.shape)}")
    transforms = chip_transforms(landmarks.to(torch.float64), size, padding)
    if jitter > 0:
        transforms = jitter_transforms(transforms, jitter, generator, size)
    n = images.shape[0]
    chips = torch.stack([extract_chip(images[k % n], transforms[k], size) for k in range(transforms.shape[0])])
    return torch.cat([chips, chips.flip(-1)]) if mirror else chips
