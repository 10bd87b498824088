"""Free mode's base face: which generated face the driver's motion is laid on, and how it is framed.

With no look image, the targets are the landmarks of the first frame's starting face moved by the
driver's motion. Two things decide whether the loss can then be trusted:

* **The start.** A face whose neutral shape already resembles the driver's reference frame needs
  small moves only. The start is the best of ``n`` random latents of the generator, scored by the
  landmark net: the weighted distance between its points and the driver's reference points once
  position, size and in-plane rotation are taken out (a similarity fit), so the score compares
  shape and expression, not where the generator puts its faces. Only faces the net reads steadily
  compete: picking the extreme of a noisy score out of many random images otherwise favours
  smudges the net can read any shape into. Measured on 256 DigiFace DCGAN samples: dlib finds a
  face in 97% of the quarter with the steadiest mesh read-out over jittered framings, in 31% of the
  least steady quarter.
* **The framing.** Generators frame their faces their own way (a 64² DigiFace DCGAN draws faces
  about 20% larger than an FFHQ-aligned crop of the same size). The driver's framing would cut G's
  face too tight or too loose, and the landmark net reads a badly framed face poorly. So G's face is
  framed the way the driver's face is framed: the driver's framing moved by the similarity that
  maps the driver's reference points onto the face's own points (refined once, since the first
  read-out is taken at the uncalibrated framing).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stylepuppet.models.framing import jitter_framing
from stylepuppet.models.interface import LatentGenerator
from stylepuppet.objective import LandmarkObjective, to_unit

#: Read-outs of the face's points when calibrating its framing (the first at the driver's framing).
CALIBRATION_PASSES = 2
#: Jittered framings a candidate face is read at to measure how steadily the net reads it.
STEADINESS_FRAMINGS = 4
#: The share of candidates, the most steadily read, that compete on shape.
STEADIEST_SHARE = 0.25


def fit_similarity(source: Tensor, target: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least-squares scale·rotation ``a + ib`` and shift with target ≈ (a + ib)·source + shift.

    source, target [N, P, 2]; weights [P] (non-negative, positive sum). Returns the complex factor
    [N] and the shift [N, 2]. Points are treated as complex numbers, where a similarity is ``k·z + t``.
    """
    w = (weights / weights.sum())[None, :]
    s = torch.complex(source[..., 0].double(), source[..., 1].double())
    t = torch.complex(target[..., 0].double(), target[..., 1].double())
    mu_s = (w * s).sum(dim=1, keepdim=True)
    mu_t = (w * t).sum(dim=1, keepdim=True)
    k = (w * (t - mu_t) * (s - mu_s).conj()).sum(dim=1) / (w * (s - mu_s).abs().square()).sum(dim=1)
    shift = mu_t[:, 0] - k * mu_s[:, 0]
    return k, torch.stack([shift.real, shift.imag], dim=-1).to(source.dtype)


def apply_similarity(points: Tensor, k: Tensor, shift: Tensor) -> Tensor:
    """Points [N, P, 2] (or centres [N, 2]) moved by the similarity ``k·z + shift`` (k [N] complex)."""
    z = torch.complex(points[..., 0].double(), points[..., 1].double())
    k = k.reshape(-1, *([1] * (z.ndim - 1)))
    moved = k * z
    return torch.stack([moved.real, moved.imag], dim=-1).to(points.dtype) + shift.reshape(
        -1, *([1] * (points.ndim - 2)), 2)


def shape_distance(points: Tensor, reference: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean distance [N] of ``reference`` [P, 2], similarity-fitted onto each of ``points``
    [N, P, 2], to those points, as a fraction of the fitted reference's scale (size-free)."""
    ref = reference.expand_as(points)
    k, shift = fit_similarity(ref, points, weights)
    fitted = apply_similarity(ref, k, shift)
    dist = torch.linalg.vector_norm(fitted - points, dim=-1)
    scale = k.abs().to(points.dtype) * torch.linalg.vector_norm(reference - reference.mean(dim=0), dim=-1).mean()
    return (dist * weights).sum(dim=1) / weights.sum() / scale


def calibrated_framing(obj: LandmarkObjective, images01: Tensor, reference: Tensor, centre: Tensor, side: Tensor,
                       rigid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """G's faces [N, 3, R, R] in [0, 1] framed like the driver's reference face.

    ``reference`` [P, 2]: the net's points of the driver's reference frame, read at its framing
    ``centre`` [1, 2] / ``side`` [1]; ``rigid`` [P]: weights of the points expressions hardly move.
    Returns each face's framing (centre [N, 2], side [N]) and its points [N, P, 2] read there.
    """
    n = images01.shape[0]
    c, s = centre.expand(n, 2), side.expand(n)
    points = obj.points(images01, c, s)
    for _ in range(CALIBRATION_PASSES - 1):
        k, shift = fit_similarity(reference.expand_as(points), points, rigid)
        c = apply_similarity(centre.expand(n, 2), k, shift)
        s = side * k.abs().to(side.dtype)
        points = obj.points(images01, c, s)
    return c, s, points


def readout_spread(obj: LandmarkObjective, images01: Tensor, centre: Tensor, side: Tensor,
                   generator: torch.Generator) -> Tensor:
    """How unsteadily the net reads each face [N]: the mean distance of its points, read at
    :data:`STEADINESS_FRAMINGS` random framings (the objective's jitter ranges, at least 3% / 5%),
    to their mean, as a fraction of the face box's diagonal."""
    shift, scale = max(obj.jitter_shift, 0.03), max(obj.jitter_scale, 0.05)
    n, count = images01.shape[0], STEADINESS_FRAMINGS
    c, s = jitter_framing(centre, side, generator, shift, scale, count)
    points = obj.points(images01.repeat(count, 1, 1, 1), c, s).view(count, n, -1, 2)
    mean = points.mean(dim=0)
    size = torch.linalg.vector_norm(mean.amax(dim=1) - mean.amin(dim=1), dim=-1)
    return torch.linalg.vector_norm(points - mean, dim=-1).mean(dim=(0, 2)) / size


@torch.no_grad()
def choose_start(generator: LatentGenerator, obj: LandmarkObjective, reference: Tensor, centre: Tensor,
                 side: Tensor, rigid: Tensor, count: int, seed: int, batch: int = 32) -> Tensor:
    """The best of ``count`` random latents [1, num_ws, dim] (see the module docstring), drawn with ``seed``."""
    rng = torch.Generator().manual_seed(seed)
    candidates = generator.candidate_latents(count, rng)
    shapes, spreads = [], []
    for i in range(0, count, batch):
        chunk = candidates[i:i + batch].to(centre.device)
        images = to_unit(generator.render(chunk, noise_mode="const"))
        c, s, points = calibrated_framing(obj, images, reference, centre, side, rigid)
        shapes.append(shape_distance(points, reference, obj.point_weights))
        spreads.append(readout_spread(obj, images, c, s, rng))
    shape, spread = torch.cat(shapes), torch.cat(spreads)
    keep = max(1, round(STEADIEST_SHARE * count))
    steady = torch.argsort(spread)[:keep]
    best = int(steady[torch.argmin(shape[steady])])
    return candidates[best:best + 1].to(centre.device)
