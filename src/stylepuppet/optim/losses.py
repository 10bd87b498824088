"""The loss terms of the animation objective, each a small pure function with shape checks.

Every function returns one value per sample (``[N]``) unless it says otherwise, so a batch of
framings or frames can be weighted and reduced by the caller. The objective of one frame is::

    λ1·look(G(w)) + λ2·landmark(G(w)) + λ3·smoothness(w, w_prev) + λ4·fidelity(w, w_avg)
      (+ λ_noise·noise_regularisation(noise) on frame 0, while the noise buffers are optimised)

:func:`landmark_loss` is the landmark term whole (crop, landmark net, comparison with the targets);
:class:`~stylepuppet.optim.objective.LandmarkObjective` only adds the per-step framings. The look
term's metrics live in :mod:`stylepuppet.perceptual.look`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from stylepuppet.landmarks.framing import crop_square, image_to_crop, resize_points
from stylepuppet.landmarks.net import HeatmapRenderer, LandmarkNet, unmirror


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


def landmark_loss(net: LandmarkNet, images01: Tensor, centre: Tensor, side: Tensor, point_weights: Tensor, *,
                  points: Tensor | None = None, heatmaps: Tensor | None = None,
                  heatmap_renderer: HeatmapRenderer | None = None, flipped: Tensor | None = None,
                  mirror: Tensor | None = None) -> Tensor:
    """The landmark loss [M] of images [M, 3, R, R] in [0, 1], each framed at ``centre`` [M, 2] / ``side`` [M]
    (image pixels) and read by ``net``.

    One target: ``points`` [M, P, 2], where the net's points should be (image pixels), compared as
    coordinates (:func:`coord_loss`, distance over the crop side) or, with ``heatmap_renderer``, as
    heat maps rendered there; or ``heatmaps`` [M or 1, P, h, h], the net's maps of the target image
    (the original method, :func:`heatmap_loss`). Crops marked in ``flipped`` [M] are read mirrored and
    their read-out mapped back through ``mirror`` [P] (see :func:`~stylepuppet.landmarks.net.unmirror`).
    """
    size = int(net.input_size)
    crops = crop_square(images01, centre, side, size)
    if flipped is not None:
        crops = torch.where(flipped[:, None, None, None], crops.flip(-1), crops)
    out = net(crops)
    seen, maps = out.points, out.heatmaps
    if flipped is not None:
        _require(mirror is not None, "mirrored crops need the net's mirror pairing")
        seen, maps = unmirror(seen, maps, flipped, mirror, size)
    if heatmaps is not None:
        _require(maps is not None, "a heat-map target needs a landmark net with heat maps")
        return heatmap_loss(maps, heatmaps.expand_as(maps), point_weights)
    _require(points is not None, "landmark_loss needs target points or heat maps")
    target = image_to_crop(points, centre, side, size)
    if heatmap_renderer is None:
        face = torch.full((target.shape[0],), float(size), dtype=target.dtype, device=target.device)
        return coord_loss(seen, target, point_weights, face)
    _require(maps is not None, "comparing as heat maps needs a landmark net with heat maps")
    h = maps.shape[-1]
    return heatmap_loss(maps, heatmap_renderer(resize_points(target, size, h), h), point_weights)


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
