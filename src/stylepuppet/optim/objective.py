"""The network-backed terms of one frame's objective (landmark, look) and their per-frame targets.

What does not change while a frame is optimised — the framing of the face, the target heat maps or
points, the look image's features — is computed once in a :class:`FrameTargets` and reused by every
step. Only the random framing jitter (drawn per step from the frame's seeded ``torch.Generator``)
varies within a frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from stylepuppet.optim import losses
from stylepuppet.errors import ConfigError
from stylepuppet.landmarks.scheme import point_weights
from stylepuppet.landmarks.framing import crop_square, crop_to_image, image_to_crop, jitter_framing

if TYPE_CHECKING:
    from stylepuppet.config import LandmarkConfig
    from stylepuppet.landmarks.net import LandmarkNet

#: Renders heat maps [N, P, h, h] from points [N, P, 2] given in heat-map pixels (FAN's target maps).
HeatmapRenderer = Callable[[Tensor, int], Tensor]


def to_unit(images: Tensor) -> Tensor:
    """Generator range [-1, 1] -> [0, 1], the range landmark nets and the look metrics take."""
    return (images + 1) * 0.5


def crop_to_heatmap(points: Tensor, crop_size: int, heatmap_size: int) -> Tensor:
    """Crop pixel coordinates -> heat-map pixel coordinates (pixel centres at integers on both grids)."""
    return (points + 0.5) * (heatmap_size / crop_size) - 0.5


@dataclass(frozen=True)
class FrameTargets:
    """The constant part of one frame's objective (all tensors on the projector's device).

    ``centre`` [1, 2] / ``side`` [1]: framing of the face in generator-image pixels, applied to
    G(w) (and to the target image). Exactly one landmark target is set: ``heatmaps`` [1, P, h, h]
    (precomputed at the plain framing), ``points`` [1, P, 2] (target landmarks in generator-image
    pixels), or, for the heat-map form with framing jitter, ``image`` [1, 3, R, R] in [0, 1] (the
    target heat maps then depend on the per-step framing and are recomputed, without gradient).
    """

    centre: Tensor
    side: Tensor
    heatmaps: Tensor | None = None
    points: Tensor | None = None
    image: Tensor | None = None


def unmirror(points: Tensor, heatmaps: Tensor | None, flipped: Tensor, mirror: Tensor,
             size: int) -> tuple[Tensor, Tensor | None]:
    """The net's read-out of mirrored crops mapped back onto the unflipped crop: for the rows where
    ``flipped`` [N] is set, x ↦ size − 1 − x and point i takes the read-out of its mirror ``mirror[i]``
    (heat maps [N, P, h, h] flipped back and permuted alike). points [N, P, 2] in crop pixels."""
    back = points[:, mirror]
    back = torch.stack([size - 1 - back[..., 0], back[..., 1]], dim=-1)
    points = torch.where(flipped[:, None, None], back, points)
    if heatmaps is not None:
        heatmaps = torch.where(flipped[:, None, None, None], heatmaps[:, mirror].flip(-1), heatmaps)
    return points, heatmaps


class LandmarkObjective:
    """Landmark loss of G(w) against a frame's targets, averaged over random framings.

    ``form="heatmap"``: group-weighted heat-map difference to the net's heat maps of the target image
    (the original method). ``form="relative"``: target points (already moved by the driver's motion)
    compared as coordinates (``compare="coords"``, distance / crop side) or as rendered heat maps.
    """

    def __init__(self, net: LandmarkNet, cfg: LandmarkConfig, *, heatmap_renderer: HeatmapRenderer | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.net = net
        self.form = cfg.form
        self.compare = cfg.compare
        self.jitter_count = cfg.jitter_count
        self.jitter_shift = cfg.jitter_shift
        self.jitter_scale = cfg.jitter_scale
        self.mirror: Tensor | None = None
        if cfg.jitter_flip and cfg.jitter_count > 1:
            if self.form != "relative":
                raise ConfigError("landmarks.jitter_flip works with form = 'relative'; set jitter_flip = false")
            if getattr(net, "mirror", None) is None:
                raise ConfigError(f"landmarks.jitter_flip: the {net.num_points}-point landmark net has no known "
                                  "mirror pairing of its points; set jitter_flip = false")
            self.mirror = torch.as_tensor(net.mirror, dtype=torch.long, device=device)
        self.size = int(net.input_size)
        weights = point_weights(cfg.groups, net.groups, net.num_points, cfg.rest)
        if not weights.sum() > 0:
            raise ConfigError("landmarks.groups: every group used by the landmark net has weight 0; "
                              "give at least one group a weight > 0")
        self.point_weights = torch.from_numpy(weights).to(device)
        self.uses_heatmaps = self.form == "heatmap" or self.compare == "heatmaps"
        if self.form == "relative" and self.compare == "heatmaps" and heatmap_renderer is None:
            raise ConfigError("landmarks.compare = 'heatmaps' needs a heat-map renderer (the FAN net); "
                              "use compare = 'coords'")
        self.render_heatmaps = heatmap_renderer

    # ------------------------------------------------------------------ targets (once per frame)

    def framing(self, box: Tensor) -> tuple[Tensor, Tensor]:
        """The net's framing (centre [N, 2], side [N]) of face boxes [N, 4] in image pixels."""
        return self.net.framing(box)

    @torch.no_grad()
    def points(self, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor:
        """The net's landmarks of images [N, 3, R, R] in [0, 1] framed at (centre, side), in image pixels."""
        out = self.net(crop_square(images01, centre, side, self.size))
        return crop_to_image(out.points, centre, side, self.size)

    @torch.no_grad()
    def heatmaps(self, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor:
        """The net's heat maps of images [N, 3, R, R] in [0, 1] framed at (centre, side)."""
        out = self.net(crop_square(images01, centre, side, self.size))
        if out.heatmaps is None:
            raise ConfigError("landmarks.form = 'heatmap' needs a landmark net with heat maps (fan)")
        return out.heatmaps

    def targets_from_image(self, target01: Tensor, centre: Tensor, side: Tensor) -> FrameTargets:
        """Heat-map form: targets from the aligned driving frame [1, 3, R, R] in [0, 1]."""
        if self.form != "heatmap":
            raise ValueError("targets_from_image is for form='heatmap'; use targets_from_points")
        if self.jitter_count > 0:
            return FrameTargets(centre, side, image=target01)
        return FrameTargets(centre, side, heatmaps=self.heatmaps(target01, centre, side))

    def targets_from_points(self, points: Tensor, centre: Tensor, side: Tensor) -> FrameTargets:
        """Relative form: target landmarks [1, P, 2] in generator-image pixels."""
        if self.form != "relative":
            raise ValueError("targets_from_points is for form='relative'; use targets_from_image")
        if points.shape[1] != self.net.num_points:
            raise ValueError(f"target points must be [1, {self.net.num_points}, 2], got {tuple(points.shape)}")
        return FrameTargets(centre, side, points=points)

    # ------------------------------------------------------------------ the loss (every step)

    def __call__(self, images: Tensor, targets: FrameTargets, generator: torch.Generator | None = None) -> Tensor:
        """Loss per image [N] of G(w) images [N, 3, R, R] in [-1, 1]; jittered framings if a generator is given."""
        n = images.shape[0]
        centre = targets.centre.expand(n, 2)
        side = targets.side.expand(n)
        count = 1
        if generator is not None and self.jitter_count > 0:
            count = self.jitter_count
            centre, side = jitter_framing(centre, side, generator, self.jitter_shift, self.jitter_scale, count)
        batch = to_unit(images).repeat(count, 1, 1, 1)
        crops = crop_square(batch, centre, side, self.size)
        flipped = None
        if count > 1 and self.mirror is not None:
            flipped = (torch.arange(n * count, device=crops.device) // n) % 2 == 1  # every second framing
            crops = torch.where(flipped[:, None, None, None], crops.flip(-1), crops)
        out = self.net(crops)
        points, heatmaps = out.points, out.heatmaps
        if flipped is not None:
            points, heatmaps = unmirror(points, heatmaps, flipped, self.mirror, self.size)
        if self.form == "heatmap":
            target = targets.heatmaps  # precomputed when there is no jitter
            if target is None:
                assert targets.image is not None, "heat-map targets need precomputed maps or the target image"
                target = self.heatmaps(targets.image.expand(n * count, -1, -1, -1), centre, side)
            loss = losses.heatmap_loss(heatmaps, target.expand_as(heatmaps), self.point_weights)
        else:
            assert targets.points is not None
            tgt = image_to_crop(targets.points.expand(n * count, -1, -1), centre, side, self.size)
            if self.compare == "coords":
                face = torch.full((n * count,), float(self.size), dtype=tgt.dtype, device=tgt.device)
                loss = losses.coord_loss(points, tgt, self.point_weights, face)
            else:
                assert self.render_heatmaps is not None and heatmaps is not None
                h = heatmaps.shape[-1]
                target = self.render_heatmaps(crop_to_heatmap(tgt, self.size, h), h)
                loss = losses.heatmap_loss(heatmaps, target, self.point_weights)
        return loss.view(count, n).mean(dim=0)


class LookMetric(Protocol):
    """A perceptual distance whose target side can be computed once (LPIPS features, or the image)."""

    def prepare(self, target: Tensor) -> Any:
        """Precompute the target's representation from images [1, 3, R, R] in [-1, 1]."""
        ...

    def __call__(self, prepared: Any, images: Tensor) -> Tensor:
        """Distance [N] of images [N, 3, R, R] in [-1, 1] to the prepared target."""
        ...


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
        return losses.msssim_l1_distance(self.msssim(x, y), losses.l1_distance(x, y))


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
        return losses.lpips_distance(self.metric.features(images), prepared)
