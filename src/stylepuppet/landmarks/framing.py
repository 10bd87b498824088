"""Differentiable square crops: how a landmark network "frames" a face inside a larger image.

Coordinates everywhere in stylepuppet are pixel-index coordinates: the centre of pixel ``i`` is
``i`` (as dlib, FAN and OpenCV report landmarks). A crop is a square given by its centre and side
length in image pixels, resampled to ``size x size``; the same crop can be applied to a driving
frame and to a generated image, and points are mapped between image and crop coordinates with
the pure functions below.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

PointsT = TypeVar("PointsT", Tensor, np.ndarray)


def _check_centre_side(images: Tensor, centre: Tensor, side: Tensor) -> None:
    n = images.shape[0]
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    if centre.shape != (n, 2):
        raise ValueError(f"centre must be [N, 2] with N={n}, got {tuple(centre.shape)}")
    if side.shape != (n,):
        raise ValueError(f"side must be [N] with N={n}, got {tuple(side.shape)}")


def _axis_weights(start: Tensor, step: Tensor, factor: Tensor, length: int, size: int) -> Tensor:
    """Resampling matrices [N, size, length] along one image axis: output ``j`` is the bilinear sample
    (zero outside) at ``start + step·j`` of the axis box-filtered by ``factor`` (pooled pixel ``k`` is
    the mean of input pixels ``factor·k … factor·k + factor − 1``; a remainder is dropped, as avg_pool2d
    drops it). The tent ``max(0, 1 − |x − k|)`` gives exactly the two bilinear weights."""
    dtype = start.dtype
    pos = start[:, None] + step[:, None] * torch.arange(size, dtype=dtype, device=start.device)
    f = factor.to(torch.long)
    pooled = torch.div(torch.arange(length, device=start.device), f, rounding_mode="floor")
    inside = (pooled < torch.div(length, f, rounding_mode="floor")).to(dtype)
    tent = (1 - (pos[:, :, None] - pooled.to(dtype)).abs()).clamp_min(0)
    return tent * (inside / factor)


def crop_square(images: Tensor, centre: Tensor, side: Tensor, size: int) -> Tensor:
    """Resample the squares (centre [N,2] as x,y; side [N]) of ``images`` [N,C,H,W] to [N,C,size,size].

    Bilinear with zeros outside the image, and differentiable in the image (and in centre/side). When
    the crop shrinks the image by 2x or more, the image is first box-filtered by the integer part of
    that factor, so the bilinear resampling that follows shrinks by less than 2x and does not alias.

    The crop is axis-aligned, so box filter and bilinear sampling are one matrix per axis:
    ``Wy · image · Wxᵀ``. The filter factor stays a device tensor, so the call never waits for the
    device (no ``.item()``): the optimisation loop calls this every step.
    """
    _check_centre_side(images, centre, side)
    h, w = images.shape[-2:]
    dtype = images.dtype
    factor = torch.floor(side.detach().min().double() / size).clamp(1, min(h, w)).to(dtype)
    # Pixel index x of the pooled image has its centre at factor·x + (factor − 1)/2 in the original.
    centre = (centre.to(dtype) - (factor - 1) / 2) / factor
    step = side.to(dtype) / (factor * size)
    start = centre - step[:, None] * (size / 2 - 0.5)
    wy = _axis_weights(start[:, 1], step, factor, h, size)
    wx = _axis_weights(start[:, 0], step, factor, w, size)
    return wy[:, None] @ images @ wx[:, None].transpose(-1, -2)


def image_to_crop(points: Tensor, centre: Tensor, side: Tensor, size: int) -> Tensor:
    """Map points [N,P,2] from image pixel coordinates into the coordinates of ``crop_square``'s output."""
    scale = (size / side)[:, None, None]
    return (points - centre[:, None, :]) * scale + (size / 2 - 0.5)


def crop_to_image(points: Tensor, centre: Tensor, side: Tensor, size: int) -> Tensor:
    """Inverse of :func:`image_to_crop`."""
    scale = (side / size)[:, None, None]
    return (points - (size / 2 - 0.5)) * scale + centre[:, None, :]


def resize_points(points: PointsT, from_size: float, to_size: float) -> PointsT:
    """Points in the pixels of one square grid -> the pixels of the same square sampled at ``to_size``
    (pixel centres at integers on both grids; e.g. crop pixels -> heat-map pixels). Tensors or arrays."""
    return (points + 0.5) * (to_size / from_size) - 0.5


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
