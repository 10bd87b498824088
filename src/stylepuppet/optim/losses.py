"""The loss terms of the animation objective, each a small pure function with shape checks.

Every function returns one value per sample (``[N]``) unless it says otherwise, so a batch of
framings or frames can be weighted and reduced by the caller. The objective of one frame is::

    λ1·look(G(w)) + λ2·landmark(G(w)) + λ3·smoothness(w, w_prev) + λ4·fidelity(w, w_avg)
      (+ λ_noise·noise_regularisation(noise) on frame 0, while the noise buffers are optimised)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

#: Mix of the weights-free look loss (Zhao et al., "Loss Functions for Image Restoration with Neural
#: Networks", 2017: 0.84 MS-SSIM + 0.16 L1 worked best for restoration).
MSSSIM_MIX = 0.84


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def heatmap_loss(pred: Tensor, target: Tensor, point_weights: Tensor) -> Tensor:
    """Group-weighted heat-map difference, as the original method: ``‖ w_p · (H_pred − H_target) ‖₂``.

    pred, target: [N, P, h, w]; point_weights: [P] (from group weights). One L2 norm over all
    points and pixels of each sample -> [N].
    """
    _require(pred.ndim == 4, f"heat maps must be [N, P, h, w], got {tuple(pred.shape)}")
    _require(pred.shape == target.shape, f"heat map shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    _require(point_weights.shape == (pred.shape[1],),
             f"point_weights must be [{pred.shape[1]}], got {tuple(point_weights.shape)}")
    diff = (pred - target) * point_weights[None, :, None, None]
    return torch.linalg.vector_norm(diff.flatten(1), dim=1)


def coord_loss(pred: Tensor, target: Tensor, point_weights: Tensor, face_size: Tensor) -> Tensor:
    """Weighted mean landmark distance as a fraction of the face size.

    ``Σ_p w_p ‖x_p − t_p‖₂ / Σ_p w_p / face_size``. pred, target: [N, P, 2] (same pixel frame);
    point_weights: [P] with a positive sum (checked once by the caller, not here: no host sync in
    the inner loop); face_size: [N] (in the same pixels). Euclidean distance per point (not
    squared) so a few badly placed points do not dominate. -> [N].
    """
    _require(pred.ndim == 3 and pred.shape[-1] == 2, f"points must be [N, P, 2], got {tuple(pred.shape)}")
    _require(pred.shape == target.shape, f"point shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    _require(point_weights.shape == (pred.shape[1],),
             f"point_weights must be [{pred.shape[1]}], got {tuple(point_weights.shape)}")
    _require(face_size.shape == (pred.shape[0],), f"face_size must be [{pred.shape[0]}], got {tuple(face_size.shape)}")
    dist = torch.linalg.vector_norm(pred - target, dim=-1)
    return (dist * point_weights).sum(dim=1) / point_weights.sum() / face_size


def latent_distance(w: Tensor, other: Tensor) -> Tensor:
    """‖w − other‖₂ over everything but the batch axis: w [N, L, D], other [N|1, L|1, D] -> [N]."""
    _require(w.ndim == 3, f"latents must be [N, num_ws, dim], got {tuple(w.shape)}")
    _require(other.ndim == 3 and other.shape[-1] == w.shape[-1],
             f"reference latent must be [N|1, num_ws|1, {w.shape[-1]}], got {tuple(other.shape)}")
    return torch.linalg.vector_norm((w - other).flatten(1), dim=1)


def smoothness(w: Tensor, w_prev: Tensor) -> Tensor:
    """‖w_i − w_{i−1}‖₂: keeps consecutive frames' latents close (one norm over all layers in W+)."""
    return latent_distance(w, w_prev)


def fidelity(w: Tensor, w_avg: Tensor) -> Tensor:
    """‖w − w_avg‖₂: keeps the latent near the generator's typical face, where images look real."""
    return latent_distance(w, w_avg)


def noise_regularisation(buffers: Iterable[Tensor]) -> Tensor:
    """NVIDIA's projector noise regulariser (a scalar): for each noise map [H, W], the squared mean
    autocorrelation at a one-pixel shift in x and in y (wrapping), at the full size and at every
    2× average-pooled size down to 8×8, summed. It stops the optimiser from hiding image content
    in the noise buffers (they then stay close to white noise).
    """
    total: Tensor | None = None
    for buf in buffers:
        _require(buf.ndim == 2, f"noise buffers must be [H, W], got {tuple(buf.shape)}")
        noise = buf[None, None]
        while True:
            term = (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            term = term + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            total = term if total is None else total + term
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    _require(total is not None, "noise_regularisation needs at least one noise buffer")
    assert total is not None
    return total


def l1_distance(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute pixel difference per sample: x, y [N, C, H, W] -> [N]."""
    _require(x.ndim == 4 and x.shape == y.shape, f"images must be equal [N, C, H, W], got {tuple(x.shape)}, "
             f"{tuple(y.shape)}")
    return (x - y).abs().flatten(1).mean(dim=1)


def msssim_l1_distance(msssim: Tensor, l1: Tensor, mix: float = MSSSIM_MIX) -> Tensor:
    """The weights-free look loss from its parts: ``mix·(1 − MS-SSIM) + (1 − mix)·L1`` (images in [0, 1])."""
    _require(msssim.shape == l1.shape, f"MS-SSIM and L1 shapes differ: {tuple(msssim.shape)} vs {tuple(l1.shape)}")
    return mix * (1 - msssim) + (1 - mix) * l1


def lpips_distance(features_x: list[Tensor] | tuple[Tensor, ...] | Tensor,
                   features_y: list[Tensor] | tuple[Tensor, ...] | Tensor) -> Tensor:
    """Sum of squared differences of (already normalised and weighted) LPIPS features -> [N].

    Accepts one flat feature tensor per image (NVIDIA's vgg16.pt ``return_lpips=True`` form) or a
    list of per-layer tensors.
    """
    xs = [features_x] if isinstance(features_x, Tensor) else list(features_x)
    ys = [features_y] if isinstance(features_y, Tensor) else list(features_y)
    _require(len(xs) == len(ys) and len(xs) > 0, "feature lists must be non-empty and of equal length")
    total: Tensor | None = None
    for fx, fy in zip(xs, ys):
        _require(fx.shape[1:] == fy.shape[1:], f"feature shapes differ: {tuple(fx.shape)} vs {tuple(fy.shape)}")
        term = (fx - fy).square().flatten(1).sum(dim=1)
        total = term if total is None else total + term
    assert total is not None
    return total
