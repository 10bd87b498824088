"""The network-backed terms of one frame's objective (landmarks, identity) and its per-frame targets.

What does not change while a frame is optimised — the framing of the face, the target heat maps or
points — is computed once in a :class:`FrameTargets` and reused by every step. Only the random
framing jitter (drawn per step from the frame's seeded ``torch.Generator``) varies within a frame.
The landmark loss itself is :func:`stylepuppet.optim.losses.landmark_loss`; :class:`LandmarkObjective`
holds the settings of a run (form, group weights, framings) and averages that loss over the framings.
:class:`IdentityObjective` is the face-descriptor distance to a reference face.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stylepuppet.config import LandmarkConfig
from stylepuppet.errors import ConfigError
from stylepuppet.identity.chip import face_chips
from stylepuppet.identity.net import IdentityNet, identity_distance
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
    ``face68`` [1, 68, 2]: where G(w)'s iBUG-68 points should be (generator pixels), which frame the
    identity term's face chip.
    """

    centre: Tensor
    side: Tensor
    heatmaps: Tensor | None = None
    points: Tensor | None = None
    image: Tensor | None = None
    face68: Tensor | None = None


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
        self.gamma = cfg.gamma
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

    def seen(self, images01: Tensor) -> Tensor:
        """Generated images [N, 3, R, R] in [0, 1] as the net reads them: raised to ``landmarks.gamma``."""
        return images01 if self.gamma == 1 else images01.clamp_min(1e-4) ** self.gamma

    @torch.no_grad()
    def points(self, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor:
        """The net's landmarks of generated images [N, 3, R, R] in [0, 1] (:meth:`seen`) framed at (centre, side),
        in image pixels."""
        return read_points(self.net, self.seen(images01), centre, side)

    @torch.no_grad()
    def presence(self, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor | None:
        """The net's face-presence logit [N] of images [N, 3, R, R] in [0, 1] framed at (centre, side), or
        None for a net that gives none (FAN)."""
        return getattr(self.net(crop_square(images01, centre, side, int(self.net.input_size))), "presence", None)

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
        batch = self.seen(to_unit(images)).repeat(count, 1, 1, 1)
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


#: Generator images smaller than this are upscaled (bicubic) before the identity term cuts dlib's face chip,
#: as the judge upscales outputs before it detects and describes their faces.
IDENTITY_READ_SIZE = 256
#: Framings the reference face's descriptor is averaged over (dlib's ``num_jitters``), half of them mirrored.
REFERENCE_FRAMINGS = 16


def identity_view(images01: Tensor, face68: Tensor) -> tuple[Tensor, Tensor]:
    """Images [N, 3, R, R] in [0, 1] as the identity network reads them (upscaled to at least
    :data:`IDENTITY_READ_SIZE`) and their iBUG-68 points [N, 68, 2] moved along."""
    size = images01.shape[-1]
    if size >= IDENTITY_READ_SIZE:
        return images01, face68
    k = IDENTITY_READ_SIZE / size
    up = F.interpolate(images01, size=(IDENTITY_READ_SIZE, IDENTITY_READ_SIZE), mode="bicubic", align_corners=False)
    return up, (face68 + 0.5) * k - 0.5


class IdentityObjective:
    """The identity term: distance of G(w)'s face descriptor to a reference face's, in the metric space of a
    face-recognition network (dlib's ResNet: same person below 0.6).

    G(w)'s face is cut out as dlib cuts it for its network (similarity alignment of the frame's iBUG-68
    points, :func:`~stylepuppet.identity.chip.face_chips`), at one random framing per step: dlib's own
    jitter (shift ±2 % of the chip, ±3°, zoom out up to 3 %), mirrored half the time, drawn from the
    frame's generator. A frame's steps thus see as many framings as steps, at the cost of one chip per step
    (the ResNet's forward + backward is about as costly as the 64² DCGAN's with four mesh crops): a pattern
    that one framing reads as the reference's face does not survive the next. The reference descriptor is
    the mean over :data:`REFERENCE_FRAMINGS` such framings of the reference face.
    """

    def __init__(self, net: IdentityNet, reference: Tensor) -> None:
        self.net = net
        self.reference = reference

    @classmethod
    @torch.no_grad()
    def of_face(cls, net: IdentityNet, images01: Tensor, face68: Tensor, seed: int = 0) -> IdentityObjective:
        """The term with the reference face of images [1, 3, R, R] in [0, 1], iBUG-68 points [1, 68, 2]."""
        image, points = identity_view(images01, face68)
        reference = net.descriptor(image, points, jitter=REFERENCE_FRAMINGS // 2,
                                   generator=torch.Generator().manual_seed(seed), mirror=True)
        return cls(net, reference)

    def descriptors(self, images01: Tensor, face68: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Descriptors [N, 128] of images [N, 3, R, R] in [0, 1] framed by ``face68`` [N | 1, 68, 2]: dlib's own
        framing, or one random framing each when a generator is given."""
        image, points = identity_view(images01, face68.expand(images01.shape[0], -1, -1))
        chips = face_chips(image, points, jitter=1 if generator is not None else 0, generator=generator,
                           size=self.net.net.chip_size)
        if generator is not None:
            flip = torch.rand(chips.shape[0], generator=generator) < 0.5
            chips = torch.where(flip.to(chips.device)[:, None, None, None], chips.flip(-1), chips)
        return self.net.net(chips)

    def __call__(self, images: Tensor, face68: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Distance [N] of G(w) images [N, 3, R, R] in [-1, 1] to the reference (see the class docstring)."""
        return identity_distance(self.descriptors(to_unit(images), face68, generator), self.reference)
