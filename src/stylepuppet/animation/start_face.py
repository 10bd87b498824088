"""Free mode's start face: which generated face the driver's motion is laid on, and how it is framed.

With no look image, the targets are the landmarks of the first frame's starting face moved by the
driver's motion. What decides whether the loss can then be trusted:

* **The start.** A face whose neutral shape already resembles the driver's reference frame needs
  small moves only. The start is the best of ``n`` random latents of the generator, scored by the
  landmark net: the weighted distance between its points and the driver's reference points once
  position, size and in-plane rotation are taken out (a similarity fit), so the score compares
  shape and expression, not where the generator puts its faces. Only faces the net reads steadily
  compete: picking the extreme of a noisy score out of many random images otherwise favours
  smudges the net can read any shape into. Measured on 256 DigiFace DCGAN samples: dlib finds a
  face in 97% of the quarter with the steadiest mesh read-out over jittered framings, in 31% of the
  least steady quarter.
* **A face, as the net sees it** (``start_presence``). Of the steady faces, only the half the net is
  surest shows a face compete (its face-presence logit, where it gives one: the mesh does). On 512
  DigiFace DCGAN samples dlib found a face in 31 / 80 / 95 / 99% of the quartiles of the mesh's
  presence, lowest first; d11's start face without this screen, in the second quartile, was missed by
  dlib at rest, and with it 40 of the run's 80 frames.
* **A visible mouth.** Of the steady faces, only the half whose skin round the mouth is brightest
  relative to the cheeks compete (:func:`mouth_clearance`). A beard, a moustache or a shadow round
  the mouth hides its motion from a viewer, while the landmark net the loss is optimised against
  still reads an opening into a dark patch: on the DigiFace DCGAN with the mesh, the two bearded start
  faces whose mouths dlib never saw open scored 0.66 and 0.69, against a median of 0.83–0.84 among the
  steady faces of four draws of 256.
* **A rehearsal** (``start_rehearsal``). Shape and looks say nothing of whether the generator can
  move a face's mouth: some faces follow their targets, others (glasses, a small pursed mouth) hardly
  move. The best few candidates each rehearse the driver's most expressive frame with the run's own
  objective (its identity term included, to the face itself) and steps, and the one that covers the
  largest share of the way there (landmark loss after / before, read over the objective's jittered and
  mirrored framings) starts the run. Rehearsed without the identity term, d20's chosen face covered 60 %
  of the way and then hardly moved in the run (its latent 0.18 from the start at the median). With
  ``start_rehearse_lips`` they rehearse the driver's widest-open mouth too, and the share is the
  lips' alone, averaged over the two frames: scored on the whole face and on the most expressive
  frame alone, d12's rehearsal chose a face that reached 18% of the way to the driver's widest
  opening as the mesh read it, and dlib saw its mouth close.
* **The framing.** Generators frame their faces their own way (a 64² DigiFace DCGAN draws faces
  about 20% larger than an FFHQ-aligned crop of the same size). The driver's framing would cut G's
  face too tight or too loose, and the landmark net reads a badly framed face poorly. So G's face is
  framed the way the driver's face is framed: the driver's framing moved by the similarity that
  maps the driver's reference points onto the face's own points (refined once, since the first
  read-out is taken at the uncalibrated framing).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from stylepuppet.animation.look import face68
from stylepuppet.config import AnimateConfig
from stylepuppet.face.motion import RIGID_GROUPS, apply_similarity, fit_similarity, mouth_opening, relative_motion
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.identity.net import IdentityNet
from stylepuppet.images import to_unit
from stylepuppet.landmarks.net import jittered_points
from stylepuppet.landmarks.scheme import eye_centres
from stylepuppet.optim.objective import FrameTargets, IdentityObjective, LandmarkObjective
from stylepuppet.optim.projector import Projector
from stylepuppet.timing import StageClock, now

#: The seed of the candidate faces and of their rehearsals: the start face depends on the driver alone, not on the
#: run's seed (which varies only the optimisation's randomness). Drawn with each run's seed, the start faces of
#: d0 at seeds 0 / 1 / 2 gave mouth correlations of 0.96 / 0.96 / −0.56 (docs/motion.md).
POOL_SEED = 0
#: Read-outs of the face's points when calibrating its framing (the first at the driver's framing).
CALIBRATION_PASSES = 2
#: Jittered framings a candidate face is read at to measure how steadily the net reads it.
STEADINESS_FRAMINGS = 4
#: The share of candidates, the most steadily read, that compete on shape.
STEADIEST_SHARE = 0.25
#: The share of the steady candidates, those the net is surest show a face, that compete on mouth and shape.
PRESENT_SHARE = 0.5
#: The share of those, the ones with the most visible mouths, that compete on shape.
CLEAREST_SHARE = 0.5
#: The landmark groups a rehearsal is scored on with ``start_rehearse_lips``.
LIP_GROUPS = ("outer_lip", "inner_lip")
#: The ring sampled round the mouth: the outer-lip contour scaled by these factors about its centre.
MOUTH_RING_SCALES = (1.35, 1.6)
#: The cheek samples: these fractions of the way from each mouth corner to the eye on its side.
CHEEK_FRACTIONS = (0.4, 0.5, 0.6)


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
    with torch.no_grad():
        points = jittered_points(obj.net, images01, centre, side, generator, shift, scale, STEADINESS_FRAMINGS)
    mean = points.mean(dim=0)
    size = torch.linalg.vector_norm(mean.amax(dim=1) - mean.amin(dim=1), dim=-1)
    return torch.linalg.vector_norm(points - mean, dim=-1).mean(dim=(0, 2)) / size


def luminance_at(images01: Tensor, points: Tensor) -> Tensor:
    """Luminance (Rec. 601) of images [N, 3, R, R] in [0, 1], bilinear at pixel positions [N, K, 2] -> [N, K]."""
    luma = (images01 * images01.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(dim=1, keepdim=True)
    res = images01.shape[-1]
    grid = (points + 0.5) / res * 2 - 1  # pixel index -> align_corners=False coordinates
    return torch.nn.functional.grid_sample(luma, grid[:, None], mode="bilinear", padding_mode="border",
                                           align_corners=False)[:, 0, 0]


def mouth_clearance(images01: Tensor, points: Tensor, groups: dict[str, np.ndarray]) -> Tensor:
    """How bare the skin round each face's mouth is [N]: the mean luminance of a ring round the lips
    (the outer-lip contour scaled by :data:`MOUTH_RING_SCALES` about its centre) over that of the
    cheeks (:data:`CHEEK_FRACTIONS` of the way from each mouth corner to the eye on its side). About 1
    for bare, evenly lit skin; a beard, a moustache or a shadow round the mouth lowers it.

    images01 [N, 3, R, R]; points [N, P, 2] in image pixels; ``groups``: the landmark net's named groups.
    """
    lips = points[:, torch.as_tensor(groups["outer_lip"], dtype=torch.long)]
    middle = lips.mean(dim=1, keepdim=True)
    ring = torch.cat([middle + k * (lips - middle) for k in MOUTH_RING_SCALES], dim=1)
    eyes = torch.stack(eye_centres(points, groups), dim=1)  # [N, 2, 2]
    eyes = torch.where((eyes[:, :1, :1] <= eyes[:, 1:, :1]), eyes, eyes.flip(1))  # image-left eye first
    rows = torch.arange(len(lips))
    corners = torch.stack([lips[rows, lips[..., 0].argmin(dim=1)], lips[rows, lips[..., 0].argmax(dim=1)]], dim=1)
    cheeks = torch.cat([corners + t * (eyes - corners) for t in CHEEK_FRACTIONS], dim=1)
    return luminance_at(images01, ring).mean(dim=1) / luminance_at(images01, cheeks).mean(dim=1).clamp_min(1e-3)


@torch.no_grad()
def best_candidates(generator: LatentGenerator, obj: LandmarkObjective, reference: Tensor, centre: Tensor,
                    side: Tensor, rigid: Tensor, count: int, seed: int, batch: int = 32, keep: int = 1,
                    presence: bool = False) -> Tensor:
    """The best ``keep`` of ``count`` random latents [keep, num_ws, dim], best first (see the module
    docstring), drawn with ``seed``; ``presence``: screen the steady faces on the net's face-presence
    logit (:func:`present_half`), where the net gives one."""
    rng = torch.Generator().manual_seed(seed)
    candidates = generator.candidate_latents(count, rng)
    shapes, spreads, clearances, presences = [], [], [], []
    for i in range(0, count, batch):
        chunk = candidates[i:i + batch].to(centre.device)
        images = to_unit(generator.render(chunk, noise_mode="const"))
        c, s, points = calibrated_framing(obj, images, reference, centre, side, rigid)
        shapes.append(shape_distance(points, reference, obj.point_weights))
        spreads.append(readout_spread(obj, images, c, s, rng))
        clearances.append(mouth_clearance(images, points, obj.net.groups))
        if presence:
            presences.append(obj.presence(images, c, s))
    shape, spread, clearance = torch.cat(shapes), torch.cat(spreads), torch.cat(clearances)
    steady = torch.argsort(spread)[:max(1, round(STEADIEST_SHARE * count))]
    if presences and all(p is not None for p in presences):
        steady = present_half(steady, torch.cat(presences))
    clear = steady[torch.argsort(clearance[steady], descending=True)[:max(1, round(CLEAREST_SHARE * len(steady)))]]
    best = clear[torch.argsort(shape[clear])[:keep]]
    return candidates[best].to(centre.device)


def present_half(steady: Tensor, presence: Tensor) -> Tensor:
    """Of the candidate indices ``steady`` [K], the :data:`PRESENT_SHARE` (at least one) with the highest
    face-presence logit (``presence`` [N] over all candidates), highest first."""
    keep = max(1, round(PRESENT_SHARE * len(steady)))
    return steady[torch.argsort(presence[steady], descending=True)[:keep]]


def most_expressive_frame(driver: Tensor, ref: int, weights: Tensor) -> int:
    """The index of the driving frame (points [T, P, 2]) whose shape differs most from frame ``ref``'s."""
    return int(torch.argmax(shape_distance(driver, driver[ref], weights)))


def rehearsal_frames(driver: Tensor, ref: int, weights: Tensor, groups: dict[str, np.ndarray]) -> list[int]:
    """The driving frames a start face rehearses: the most expressive (:func:`most_expressive_frame`) and
    the one with the widest-open mouth (inner-lip height over the eyes' distance), once if they coincide."""
    widest = int(np.argmax(mouth_opening(driver.cpu().numpy(), groups)))
    return list(dict.fromkeys([most_expressive_frame(driver, ref, weights), widest]))


def rehearsal_share(generator: LatentGenerator, obj: LandmarkObjective, projector: Projector, start: Tensor,
                    targets: FrameTargets, seed: int) -> float:
    """The share of its landmark loss to ``targets`` that a face (latent [1, num_ws, dim]) keeps after
    ``projector`` optimises it for one later frame's steps (lower: it follows better). The loss is
    read over the objective's jittered (and mirrored) framings, the same ones before and after."""
    def loss(latent: Tensor) -> Tensor:
        with torch.no_grad():
            return obj(generator.render(latent, noise_mode="const"), targets, torch.Generator().manual_seed(seed))
    before = loss(start)
    result = projector.project(1, targets)  # a later frame: starts at the anchor, leaves the noise alone
    return float(loss(result.latent[None].to(start.device)) / before.clamp_min(1e-12))


@dataclass(frozen=True)
class StartFace:
    """Free mode's start: the latent [num_ws, dim] (None: the generator's mean latent), the framing of its
    face (``centre`` [1, 2], ``side`` [1]) and the net's points [P, 2] there, onto which the driver's motion
    is laid."""

    latent: Tensor | None
    centre: Tensor
    side: Tensor
    points: Tensor


def choose_start_face(cfg: AnimateConfig, generator: LatentGenerator, obj: LandmarkObjective, driver: np.ndarray,
                      ref: int, centre: np.ndarray, side: np.ndarray, device: torch.device,
                      progress: bool = False, clock: StageClock | None = None,
                      identity_net: IdentityNet | None = None) -> StartFace:
    """Free mode's start face (see the module docstring): the best of ``cfg.start_candidates`` random faces,
    the best ``cfg.start_rehearsal`` of them rehearsed; the mean latent without candidates.

    ``driver``: the driver's points [T, P, 2], framed at its reference frame ``ref``'s ``centre`` [1, 2] /
    ``side`` [1]. ``clock``: receives the candidates' scoring (``start_scoring``) and the rehearsals
    (``start_rehearsal``), a fixed cost of the run that benchmarks report apart from the frames.
    ``identity_net``: the run's identity term (when its λ is above 0), which each face then rehearses with, its
    reference the face itself, as the run will.
    """
    began = now()
    chosen_by = obj  # the faces compete as drawn, whatever gamma the run's loss reads them at
    if obj.gamma != 1:
        chosen_by = LandmarkObjective(obj.net, dataclasses.replace(cfg.landmarks, gamma=1.0), device=device)
    ref_points = torch.as_tensor(driver[ref], dtype=torch.float32, device=device)
    c = torch.as_tensor(centre, dtype=torch.float32, device=device)
    s = torch.as_tensor(side, dtype=torch.float32, device=device)
    rigid = torch.zeros(obj.net.num_points, device=device)
    for name in RIGID_GROUPS:
        rigid[torch.as_tensor(obj.net.groups[name], dtype=torch.long)] = 1.0
    if cfg.start_candidates == 0:
        latents = generator.mean_latent().to(device).reshape(1, 1, -1).expand(1, generator.num_ws, -1)
    else:
        latents = best_candidates(generator, chosen_by, ref_points, c, s, rigid, cfg.start_candidates, POOL_SEED,
                                  keep=max(1, cfg.start_rehearsal), presence=cfg.start_presence)
    with torch.no_grad():
        images = to_unit(generator.render(latents, noise_mode="const"))
    bc, bs, base = calibrated_framing(chosen_by, images, ref_points, c, s, rigid)
    scored = clock.record("start_scoring", began) if clock is not None else began
    best = 0
    if len(latents) > 1:
        driver_t = torch.as_tensor(driver, dtype=torch.float32, device=device)
        if cfg.start_rehearse_lips:
            frames = rehearsal_frames(driver_t, ref, obj.point_weights, obj.net.groups)
            lips = {g: float(g in LIP_GROUPS) for g in cfg.landmarks.groups}
            scorer = LandmarkObjective(obj.net, dataclasses.replace(cfg.landmarks, groups=lips, rest=0.0, gamma=1.0),
                                       device=device)
        else:
            frames, scorer = [most_expressive_frame(driver_t, ref, obj.point_weights)], chosen_by
        schedule = (cfg.schedule if cfg.start_rehearsal_steps is None
                    else dataclasses.replace(cfg.schedule, steps=cfg.start_rehearsal_steps))
        shares = []
        for k in tqdm(range(len(latents)), unit="face", disable=not progress, desc="rehearse start faces",
                      leave=False):
            identity = None
            if identity_net is not None and cfg.loss.identity > 0:
                try:
                    identity = IdentityObjective.of_face(identity_net, images[k:k + 1], face68(obj, base[k:k + 1]),
                                                         POOL_SEED)
                except ValueError:  # its face spans too little of the image to frame: the run could not use it
                    shares.append(math.inf)
                    continue
            share = 0.0
            for frame in frames:
                goal = torch.as_tensor(relative_motion(driver[[ref, frame]], base[k].cpu().numpy(), 0,
                                                       groups=obj.net.groups, strength=cfg.landmarks.strength)[1:],
                                       dtype=torch.float32, device=device)
                targets = obj.targets_from_points(goal, bc[k:k + 1], bs[k:k + 1])
                if identity is not None:
                    targets = dataclasses.replace(targets, face68=face68(obj, goal))
                projector = Projector(generator, chosen_by, cfg.loss, schedule, seed=POOL_SEED, anchor=latents[k],
                                      identity=identity, device=device)
                share += rehearsal_share(generator, scorer, projector, latents[k:k + 1], targets, POOL_SEED)
            shares.append(share / len(frames))
        best = int(np.argmin(shares))
    if clock is not None:
        clock.record("start_rehearsal", scored)
    start = None if cfg.start_candidates == 0 else latents[best]
    if chosen_by is not obj:  # the motion is laid on the face as the run's loss reads it
        bc, bs, base = calibrated_framing(obj, images[best:best + 1], ref_points, c, s, rigid)
        best = 0
    return StartFace(start, bc[best:best + 1], bs[best:best + 1], base[best])
