"""Keep-identity's look, before any driving frame: framed the way the generator frames faces, then projected.

1. **Framing.** The generator must draw the look's face where and as large as it draws its own faces,
   or it is asked for a face it never makes (the 64² DigiFace DCGAN draws faces about 20 % larger than
   an FFHQ-aligned crop, and lower). Generators trained on FFHQ-aligned faces (StyleGAN2:
   ``ffhq_aligned``) get FFHQ's alignment; for any other the layout is measured — the mean of the 68
   points the run's detector finds on :data:`LAYOUT_SAMPLES` of its random faces (cached per network in
   ``<cache>/face-layout/``, as the latent statistics are) — and the look is mapped onto it by the
   similarity that fits its rigid points (eyes, nose) onto the layout's. Either way what aligned the look
   is a quad in the look image's pixels (:mod:`stylepuppet.face.align`), kept as ``look_quad``.
2. **Projection** (:func:`project_look`): the look alone — look term, identity term, the pull to the
   start — for ``steps_first`` steps, noise buffers included, from the mean latent or the best of
   ``start_candidates`` random faces. Frame 0 then starts at the look's latent, and the
   fidelity term pulls every frame towards it. The reconstruction's identity distance tells up front
   whether the generator can draw this face at all (:data:`LOOK_DISTANCE_LIMIT`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stylepuppet import atomic, weights
from stylepuppet.animation.networks import Networks
from stylepuppet.animation.state import snapshot_noise
from stylepuppet.config import AnimateConfig, LossWeights
from stylepuppet.errors import ConfigError, LookWarning, MediaError
from stylepuppet.face.align import align_crop, ffhq_quad, to_aligned
from stylepuppet.face.detect import LandmarkDetector, detect_image, make_detector
from stylepuppet.face.motion import RIGID_GROUPS, fit_similarity
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.images import to_tensor, to_uint8, to_unit, upscale
from stylepuppet.landmarks.framing import box_from_points
from stylepuppet.landmarks.scheme import GROUPS
from stylepuppet.optim.objective import FrameTargets, IdentityObjective, LandmarkObjective
from stylepuppet.optim.projector import Projector, StepCallback
from stylepuppet.video import content_digest, load_image

#: Random faces whose mean landmark layout frames the look for a generator not aligned like FFHQ.
LAYOUT_SAMPLES = 128
#: Least share of those faces the detector must find for the layout to be trusted.
LAYOUT_MIN_FOUND = 0.25
#: Faces are detected at this size at least (the detector's smallest face is ~80 px), as the judge does.
DETECT_SIZE = 256
#: A reconstruction whose identity distance to the look (dlib's metric, plain framing) exceeds this is a
#: face the generator cannot draw: animating it gives another person (warned before frame 0).
LOOK_DISTANCE_LIMIT = 0.45
#: The projection's fidelity λ: its pull to the start candidate stays light whatever the frames' λ (a pull
#: of 0.5 there left a reconstruction at 0.63, docs/keep-identity.md).
PROJECTION_FIDELITY = LossWeights().fidelity
LAYOUT_FORMAT = 1


# ---------------------------------------------------------------------------------------------- framing


def _layout_key(generator: LatentGenerator, detector: str) -> str:
    """A key that follows the network, not its file: a hash of four fixed random faces it renders."""
    with torch.no_grad():
        images = to_uint8(generator.render(generator.candidate_latents(4, torch.Generator().manual_seed(0))))
    h = hashlib.sha256(f"v{LAYOUT_FORMAT} n{LAYOUT_SAMPLES} {detector} {images.shape}".encode())
    h.update(images.tobytes())
    return h.hexdigest()


@torch.no_grad()
def measure_face_layout(generator: LatentGenerator, detector: LandmarkDetector) -> tuple[np.ndarray, float]:
    """The mean 68 points [68, 2] (generator pixels) of the faces the detector finds on :data:`LAYOUT_SAMPLES`
    random faces of the generator, and the share it found."""
    size = generator.img_resolution
    scale = max(1.0, DETECT_SIZE / size)
    found = []
    latents = generator.candidate_latents(LAYOUT_SAMPLES, torch.Generator().manual_seed(0))
    for i in range(0, LAYOUT_SAMPLES, 32):
        for image in to_uint8(generator.render(latents[i:i + 32], noise_mode="const")):
            faces = detector.detect(upscale(image, DETECT_SIZE))
            if faces:
                found.append((max(faces, key=lambda f: f.area).points + 0.5) / scale - 0.5)
    share = len(found) / LAYOUT_SAMPLES
    return (np.mean(found, axis=0) if found else np.full((68, 2), np.nan)), share


def face_layout(generator: LatentGenerator, detector_name: str, *, cache: bool = True) -> np.ndarray | None:
    """Where the generator draws its faces: None for FFHQ-aligned generators (the look is aligned like FFHQ),
    else the measured mean 68 points [68, 2] in generator pixels (see the module docstring). When the detector
    finds too few faces among the samples (an untrained network), warns and returns None."""
    if getattr(generator, "ffhq_aligned", False):
        return None
    key = _layout_key(generator, detector_name)
    path = weights.cache_dir() / "face-layout" / f"{key}.json"
    if cache and path.is_file():
        try:
            return np.asarray(json.loads(path.read_text())["points"], dtype=np.float64).reshape(68, 2)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    points, share = measure_face_layout(generator, make_detector(detector_name))
    if share < LAYOUT_MIN_FOUND:
        warnings.warn(f"the detector found faces in only {share:.0%} of {LAYOUT_SAMPLES} random faces of the "
                      "generator; the look is aligned like FFHQ instead of the generator's own framing",
                      LookWarning, stacklevel=2)
        return None
    if cache:
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs the measurement next time
            atomic.write_text(path, json.dumps({"format": LAYOUT_FORMAT, "found": share, "points": points.tolist()}))
    return points


def layout_quad(points: np.ndarray, layout: np.ndarray, size: int) -> np.ndarray:
    """The quad [4, 2] (source pixels, FFHQ's corner order) whose crop at ``size`` puts the face of 68 points
    [68, 2] onto ``layout`` [68, 2]: the similarity fitted on the rigid points (eyes, nose), inverted at the
    crop's outer corners."""
    rigid = np.concatenate([GROUPS[name] for name in RIGID_GROUPS])
    src = torch.as_tensor(np.asarray(points, dtype=np.float64)[rigid])[None]
    dst = torch.as_tensor(np.asarray(layout, dtype=np.float64)[rigid])[None]
    k, shift = fit_similarity(src, dst, torch.ones(len(rigid), dtype=torch.float64))
    k_c, t = complex(k[0]), complex(float(shift[0, 0]), float(shift[0, 1]))
    lo, hi = -0.5, size - 0.5
    corners = [complex(lo, lo), complex(lo, hi), complex(hi, hi), complex(hi, lo)]  # TL, BL, BR, TR
    back = [(c - t) / k_c for c in corners]
    return np.array([[z.real, z.imag] for z in back])


@dataclass(frozen=True)
class LookFace:
    """The look framed for the generator: ``image`` [R, R, 3] uint8, dlib's 68 ``points`` [68, 2] in its pixels,
    and ``quad`` [4, 2], what aligned it, in the look image's pixels (FFHQ's corner order)."""

    image: np.ndarray
    points: np.ndarray
    quad: np.ndarray


def look_face(look: Path, cfg: AnimateConfig, generator: LatentGenerator) -> LookFace:
    """The look image framed the way ``generator`` frames faces (NoFaceError if it shows none)."""
    image = load_image(look)
    size = generator.img_resolution
    points = look_points(image, make_detector(cfg.track.detector), f"the look image {look}")
    layout = face_layout(generator, cfg.track.detector)
    quad = ffhq_quad(points) if layout is None else layout_quad(points, layout, size)
    return LookFace(align_crop(image, quad, size).image, to_aligned(points, quad, size), quad)


def look_points(image: np.ndarray, detector: LandmarkDetector, what: str) -> np.ndarray:
    """The 68 points [68, 2] of the look's largest face in its own pixels, found at :data:`DETECT_SIZE` at
    least: a small look (a 64² face the DCGAN drew) is upscaled for the detector, which misses small faces."""
    big = upscale(image, DETECT_SIZE)
    scale = np.array([big.shape[1] / image.shape[1], big.shape[0] / image.shape[0]])
    return (detect_image(big, detector, what=what).points + 0.5) / scale - 0.5


# ---------------------------------------------------------------------------------------------- projection


@dataclass(frozen=True)
class LookLatent:
    """The projected look: ``latent`` [num_ws, dim], the noise buffers it was projected with, the figures
    (``look``, ``identity``: the terms at the end, unweighted; ``identity`` at dlib's plain framing), and what
    it belongs to (``network``, ``space``, ``look_digest``: sha256 of the look file), checked on reuse."""

    latent: Tensor
    noise: dict[str, np.ndarray]
    figures: dict[str, float]
    network: str
    space: str
    look_digest: str

    def summary(self) -> str:
        figures = ", ".join(f"{name} {value:.3f}" for name, value in self.figures.items())
        return f"the look projected into {self.network} ({self.space}): {figures} (identity: same person below 0.6)"

    def save(self, path: Path) -> None:
        arrays = {"latent": self.latent.numpy(), "figures": np.array(json.dumps(self.figures)),
                  "network": np.array(self.network), "space": np.array(self.space),
                  "look_digest": np.array(self.look_digest)}
        arrays |= {f"noise/{name}": value for name, value in self.noise.items()}
        atomic.save_npz(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> LookLatent:
        try:
            with np.load(path) as z:
                noise = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("noise/")}
                return cls(torch.from_numpy(z["latent"].copy()), noise, json.loads(str(z["figures"])),
                           str(z["network"]), str(z["space"]), str(z["look_digest"]))
        except (OSError, ValueError, KeyError) as exc:
            raise MediaError(f"cannot read the look latent {path} ({exc}); write it with `stylepuppet project`") \
                from None

    def check(self, cfg: AnimateConfig, look: Path, path: Path) -> None:
        """ConfigError unless this projection is of ``look`` with the run's generator and space."""
        theirs = (self.network, self.space, self.look_digest)
        ours = (cfg.network, cfg.space, content_digest(look))
        names = ("network", "space", "look image")
        wrong = [f"{n} ({a!r} there, {b!r} here)" if n != "look image" else n
                 for n, a, b in zip(names, theirs, ours) if a != b]
        if wrong:
            raise ConfigError(f"{path} is the projection of another {', '.join(wrong)}; project this look with "
                              "`stylepuppet project` and the run's settings, or leave --look-latent out")


def net_points(obj: LandmarkObjective, image01: Tensor, points68: np.ndarray,
               device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The landmark net's framing (centre [1, 2], side [1]) of the face in ``image01`` [1, 3, R, R] whose
    detector found its 68 points [68, 2] there, and the net's points there [1, P, 2]."""
    box = box_from_points(torch.as_tensor(points68[None], dtype=torch.float32))
    centre, side = obj.framing(box.to(device))
    return centre, side, obj.points(image01, centre, side)


@torch.no_grad()
def render_latent(generator: LatentGenerator, latent: Tensor) -> Tensor:
    """The image [1, 3, R, R] in [0, 1] of one saved latent ([num_ws | 1, dim]: a look's projection, a start face)."""
    return to_unit(generator.render(latent.reshape(1, -1, generator.latent_dim).expand(1, generator.num_ws, -1)))


def face68(obj: LandmarkObjective, points: Tensor) -> Tensor:
    """The iBUG-68 points [..., 68, 2] among the landmark net's points [..., P, 2] (the identity term's framing)."""
    index = getattr(obj.net, "ibug68", None)
    if index is None:
        raise ConfigError(f"the identity term frames faces by the 68 iBUG points, and the {obj.net.num_points}-point "
                          "landmark net has no known mapping to them; set loss.identity = 0")
    return points[..., torch.as_tensor(index, dtype=torch.long, device=points.device), :]


@torch.no_grad()
def best_look_start(generator: LatentGenerator, score: Callable[[Tensor], Tensor], count: int, seed: int,
                    device: torch.device, batch: int = 32) -> Tensor:
    """The latent [1, num_ws, dim] of the best of ``count`` random faces by ``score`` (lower is better) of their
    images [N, 3, R, R] in [-1, 1]."""
    candidates = generator.candidate_latents(count, torch.Generator().manual_seed(seed)).to(device)
    scores = torch.cat([score(generator.render(candidates[i:i + batch], noise_mode="const"))
                        for i in range(0, count, batch)])
    return candidates[int(torch.argmin(scores))][None]


def project_look(cfg: AnimateConfig, nets: Networks, obj: LandmarkObjective, look: LookFace, look_file: Path,
                 device: torch.device, on_step: StepCallback | None = None) -> LookLatent:
    """Project the framed look (see the module docstring) and warn when the generator cannot draw it."""
    generator = nets.generator
    image01 = to_unit(to_tensor(look.image, device))
    centre, side, points = net_points(obj, image01, look.points, device)
    chip = face68(obj, points) if nets.identity is not None else None
    identity = None if chip is None or nets.identity is None else IdentityObjective.of_face(nets.identity, image01,
                                                                                           chip, cfg.seed)
    look_target = None if nets.look is None else nets.look.prepare(to_tensor(look.image, device))
    # the look alone: no landmark or smoothness term, and the default pull to the start candidate (the frames'
    # fidelity λ weighs a pull to the look's latent, a different job)
    loss = dataclasses.replace(cfg.loss, landmark=0.0, smoothness=0.0, fidelity=PROJECTION_FIDELITY)
    targets = FrameTargets(centre, side, face68=chip)
    start = None
    if cfg.start_candidates > 0:
        def score(images: Tensor) -> Tensor:
            total = torch.zeros(images.shape[0], device=device)
            if nets.look is not None and loss.look > 0:
                total = total + loss.look * nets.look(look_target, images)
            if identity is not None and chip is not None and loss.identity > 0:
                total = total + loss.identity * identity(images, chip)
            return total
        start = best_look_start(generator, score, cfg.start_candidates, cfg.seed, device)
    # the fidelity term pulls towards the start: the generator's mean latent (a trained mean face), or the best
    # candidate (a DCGAN's "mean" latent is one arbitrary face: a pull there only drags the look elsewhere)
    projector = Projector(generator, None, loss, cfg.schedule, look=nets.look, look_target=look_target,
                          identity=identity, seed=cfg.seed, anchor=start, device=device)
    result = projector.project(0, targets, first=True, on_step=on_step)
    figures = {k: v for k, v in result.terms.items() if k in ("look", "identity")}
    if identity is not None and chip is not None and "identity" not in figures:  # measured even when not weighed
        with torch.no_grad():
            figures["identity"] = float(identity(generator.render(result.latent[None].to(device)), chip)[0])
    latent = LookLatent(result.latent, snapshot_noise(generator), figures, cfg.network, cfg.space,
                        content_digest(look_file))
    warn_if_undrawable(latent)
    return latent


def warn_if_undrawable(latent: LookLatent) -> None:
    """The up-front warning of a look the generator cannot draw (see :data:`LOOK_DISTANCE_LIMIT`)."""
    distance = latent.figures.get("identity")
    if distance is not None and distance > LOOK_DISTANCE_LIMIT:
        warnings.warn(f"the generator cannot draw the look's face: its best reconstruction is {distance:.2f} from "
                      f"it in dlib's face metric (same person below 0.6; limit here {LOOK_DISTANCE_LIMIT}), so the "
                      "animation will show another person; see `stylepuppet project` and choose a generator that "
                      "can draw this face", LookWarning, stacklevel=2)
