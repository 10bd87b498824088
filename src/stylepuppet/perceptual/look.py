"""The look term's metrics: how far G(w) is from the look image, with the look's side computed once.

:class:`LPIPSLook` (the original method's perceptual distance) and :class:`MSSSIMLook` (the
weights-free offline choice) share the :class:`LookMetric` interface the projector calls every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from stylepuppet.images import to_unit
from stylepuppet.perceptual.lpips import feature_distance

#: Mix of the weights-free look loss (Zhao et al., "Loss Functions for Image Restoration with Neural
#: Networks", 2017: 0.84 MS-SSIM + 0.16 L1 worked best for restoration).
MSSSIM_MIX = 0.84


class LookMetric(Protocol):
    """A perceptual distance whose target side can be computed once (LPIPS features, or the image)."""

    def prepare(self, target: Tensor) -> Any:
        """Precompute the target's representation from images [1, 3, R, R] in [-1, 1]."""
        ...

    def __call__(self, prepared: Any, images: Tensor) -> Tensor:
        """Distance [N] of images [N, 3, R, R] in [-1, 1] to the prepared target."""
        ...


def l1_distance(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute pixel difference per sample: x, y [N, C, H, W] -> [N]."""
    if not (x.ndim == 4 and x.shape == y.shape):
        raise ValueError(f"images must be equal [N, C, H, W], got {tuple(x.shape)}, {tuple(y.shape)}")
    return (x - y).abs().flatten(1).mean(dim=1)


def msssim_l1_distance(msssim: Tensor, l1: Tensor, mix: float = MSSSIM_MIX) -> Tensor:
    """The weights-free look loss from its parts: ``mix·(1 − MS-SSIM) + (1 − mix)·L1`` (images in [0, 1])."""
    if msssim.shape != l1.shape:
        raise ValueError(f"MS-SSIM and L1 shapes differ: {tuple(msssim.shape)} vs {tuple(l1.shape)}")
    return mix * (1 - msssim) + (1 - mix) * l1


class MSSSIMLook:
    """The weights-free look loss: ``0.84·(1 − MS-SSIM) + 0.16·L1`` on [0, 1] images.

    A documented offline choice for when no LPIPS weights are at hand (LPIPS with an untrained trunk
    measures nothing); never substituted silently. ``msssim(x, y) -> [N]`` is the MS-SSIM function.
    """

    def __init__(self, msssim: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.msssim = msssim

    def prepare(self, target: Tensor) -> Tensor:
        return to_unit(target).detach()

    def __call__(self, prepared: Tensor, images: Tensor) -> Tensor:
        x = to_unit(images)
        y = prepared.expand_as(x)
        return msssim_l1_distance(self.msssim(x, y), l1_distance(x, y))


class LPIPSLook:
    """LPIPS to the look image; the look's features are computed once (``prepare``) and reused every step.

    ``metric.features(images in [-1, 1]) -> [N, D]`` are LPIPS's folded features, whose squared
    distance is the LPIPS distance (:mod:`stylepuppet.perceptual.lpips`).
    """

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    def prepare(self, target: Tensor) -> Tensor:
        with torch.no_grad():
            return self.metric.features(target)

    def __call__(self, prepared: Tensor, images: Tensor) -> Tensor:
        return feature_distance(self.metric.features(images), prepared)
