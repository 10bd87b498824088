"""Differentiable square crops: how a landmark network "frames" a face inside a larger image.

Coordinates everywhere in stylepuppet are pixel-index coordinates: the centre of pixel ``i`` is
``i`` (as dlib, FAN and OpenCV report landmarks). A crop is a square given by its centre and side
length in image pixels, resampled to ``size x size``; the same crop can be applied to a driving
frame and to a generated image, and points are mapped between image and crop coordinates with
the pure functions below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_centre_side(images: Tensor, centre: Tensor, side: Tensor) -> None:
    n = images.shape[0]
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    if centre.shape != (n, 2):
        raise ValueError(f"centre must be [N, 2] with N={n}, got {tuple(centre.shape)}")
    if side.shape != (n,):
        raise ValueError(f"side must be [N] with N={n}, got {tuple(side.shape)}")


def crop_square(images: Tensor, centre: Tensor, side: Tensor, size: int, padding_mode: str = "zeros") -> Tensor:
    """Resample the squares (centre [N,2] as x,y; side [N]) of ``images`` [N,C,H,W] to [N,C,size,size].

    Bilinear and differentiable in the image (and in centre/side). When the crop shrinks the image
    by 2x or more, the image is first box-filtered by the integer part of that factor, so the
    bilinear resampling that follows shrinks by less than 2x and does not alias.
    """
    _check_centre_side(images, centre, side)
    h, w = images.shape[-2:]
    factor = int(torch.min(side.detach()).item() / size)
    factor = max(1, min(factor, h, w))
    if factor > 1:
        images = F.avg_pool2d(images, kernel_size=factor, stride=factor, ceil_mode=False)
        # Pixel index x in the pooled image has its centre at factor*x + (factor-1)/2 in the original.
        centre = (centre - (factor - 1) / 2) / factor
        side = side / factor
        h, w = images.shape[-2:]
    dtype = images.dtype
    centre = centre.to(dtype)
    side = side.to(dtype)
    theta = torch.zeros(images.shape[0], 2, 3, dtype=dtype, device=images.device)
    theta[:, 0, 0] = side / w
    theta[:, 1, 1] = side / h
    theta[:, 0, 2] = (2 * centre[:, 0] + 1) / w - 1
    theta[:, 1, 2] = (2 * centre[:, 1] + 1) / h - 1
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def image_to_crop(points: Tensor, centre: Tensor, side: Tensor, size: int) -> Tensor:
    """Map points [N,P,2] from image pixel coordinates into the coordinates of ``crop_square``'s output."""
    scale = (size / side)[:, None, None]
    return (points - centre[:, None, :]) * scale + (size / 2 - 0.5)


def crop_to_image(points: Tensor, centre: Tensor, side: Tensor, size: int) -> Tensor:
    """Inverse of :func:`image_to_crop`."""
    scale = (side / size)[:, None, None]
    return (points - (size / 2 - 0.5)) * scale + centre[:, None, :]


def fan_framing(box: Tensor) -> tuple[Tensor, Tensor]:
    """face-alignment's framing of a face box [N,4] (x1,y1,x2,y2): centre (shifted up 0.12 h) and side.

    scale = (w + h) / 195 and the crop side is 200 * scale, as in face-alignment's ``crop``.
    """
    if box.ndim != 2 or box.shape[-1] != 4:
        raise ValueError(f"box must be [N, 4] (x1, y1, x2, y2), got {tuple(box.shape)}")
    x1, y1, x2, y2 = box.unbind(-1)
    cx = (x1 + x2) / 2
    cy = (y1 + y2) / 2 - 0.12 * (y2 - y1)
    scale = ((x2 - x1) + (y2 - y1)) / 195.0
    return torch.stack([cx, cy], dim=-1), 200.0 * scale


def box_from_points(points: Tensor) -> Tensor:
    """Tight box [N,4] around points [N,P,2] (the "detector box" derived from landmarks)."""
    lo = points.amin(dim=1)
    hi = points.amax(dim=1)
    return torch.cat([lo, hi], dim=-1)


def jitter_framing(centre: Tensor, side: Tensor, generator: torch.Generator | None,
                   shift: float = 0.03, scale: float = 0.05, count: int = 1) -> tuple[Tensor, Tensor]:
    """``count`` random perturbations of each framing: centre moved by up to ±shift·side, side scaled by
    up to ±scale. Returns centre [count*N, 2] and side [count*N] (jitter-major order), to be applied
    identically to the target and the generated image so the loss cannot be fooled by one framing.
    """
    n = centre.shape[0]
    u = torch.rand(count, n, 3, generator=generator, dtype=torch.float64).to(centre.device, centre.dtype) * 2 - 1
    new_side = side[None] * (1 + scale * u[..., 2])
    new_centre = centre[None] + shift * side[None, :, None] * u[..., :2]
    return new_centre.reshape(count * n, 2), new_side.reshape(count * n)
