"""The landmark term of one frame's objective and its per-frame targets.

What does not change while a frame is optimised — the framing of the face, the target heat maps or
points — is computed once in a :class:`FrameTargets` and reused by every step. Only the random
framing jitter (drawn per step from the frame's seeded ``torch.Generator``) varies within a frame.
The loss itself is :func:`stylepuppet.optim.losses.landmark_loss`; :class:`LandmarkObjective` holds
the settings of a run (form, group weights, framings) and averages that loss over the framings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stylepuppet.config import LandmarkConfig
from stylepuppet.errors import ConfigError
from stylepuppet.images import to_unit
from stylepuppet.landmarks.framing import crop_square, jitter_framing
from stylepuppet.landmarks.net import HeatmapRenderer, LandmarkNet, read_points
from stylepuppet.landmarks.scheme import point_weights
from stylepuppet.optim.losses import landmark_loss


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
        weights = point_weights(cfg.groups, net.groups, net.num_points, cfg.rest)
        if not weights.sum() > 0:
            raise ConfigError("landmarks.groups: every group used by the landmark net has weight 0; "
                              "give at least one group a weight > 0")
        self.point_weights = torch.from_numpy(weights).to(device)
        if self.form == "relative" and cfg.compare == "heatmaps" and heatmap_renderer is None:
            raise ConfigError("landmarks.compare = 'heatmaps' needs a heat-map renderer (the FAN net); "
                              "use compare = 'coords'")
        # The relative form compares rendered heat maps only when asked; the heat-map form compares the net's own.
        self.render_heatmaps = heatmap_renderer if self.form == "relative" and cfg.compare == "heatmaps" else None

    # ------------------------------------------------------------------ targets (once per frame)

    def framing(self, box: Tensor) -> tuple[Tensor, Tensor]:
        """The net's framing (centre [N, 2], side [N]) of face boxes [N, 4] in image pixels."""
        return self.net.framing(box)

    @torch.no_grad()
    def points(self, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor:
        """The net's landmarks of images [N, 3, R, R] in [0, 1] framed at (centre, side), in image pixels."""
        return read_points(self.net, images01, centre, side)

    @torch.no_grad()
    def heatmaps(self, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor:
        """The net's heat maps of images [N, 3, R, R] in [0, 1] framed at (centre, side)."""
        out = self.net(crop_square(images01, centre, side, int(self.net.input_size)))
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
        """Loss per image [N] of G(w) images [N, 3, R, R] in [-1, 1]; jittered framings if a generator is given
        (every second one read mirrored when the config asks)."""
        n = images.shape[0]
        centre = targets.centre.expand(n, 2)
        side = targets.side.expand(n)
        count = 1
        if generator is not None and self.jitter_count > 0:
            count = self.jitter_count
            centre, side = jitter_framing(centre, side, generator, self.jitter_shift, self.jitter_scale, count)
        batch = to_unit(images).repeat(count, 1, 1, 1)
        flipped = None
        if count > 1 and self.mirror is not None:
            flipped = (torch.arange(n * count, device=batch.device) // n) % 2 == 1
        if self.form == "heatmap":
            target = targets.heatmaps  # precomputed when there is no jitter
            if target is None:
                assert targets.image is not None, "heat-map targets need precomputed maps or the target image"
                target = self.heatmaps(targets.image.expand(n * count, -1, -1, -1), centre, side)
            loss = landmark_loss(self.net, batch, centre, side, self.point_weights, heatmaps=target)
        else:
            assert targets.points is not None
            loss = landmark_loss(self.net, batch, centre, side, self.point_weights,
                                 points=targets.points.expand(n * count, -1, -1),
                                 heatmap_renderer=self.render_heatmaps, flipped=flipped, mirror=self.mirror)
        return loss.view(count, n).mean(dim=0)
