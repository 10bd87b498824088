"""Stages 1 and 2 of a run: the driving face track, then the landmark targets of every frame.

1. **Track** the driving face (or reuse a ``track.npz``): smoothed alignment quads and landmarks.
2. **Targets**: align each driving frame like FFHQ at the generator's resolution and derive the
   landmark targets in aligned pixels — the framing of the face for the landmark net, and for the
   relative form the landmark net's points moved by the driver's motion onto a base face (the look
   image's in keep-identity mode, framed the way the generator frames faces,
   :mod:`stylepuppet.animation.look`; the generator's start face in free mode,
   :mod:`stylepuppet.animation.start_face`) — and the iBUG-68 points among them that frame the identity
   term's face chip. Saved to ``OUT/targets.npz``.

Both are deterministic: a resumed run rebuilds the same targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylepuppet import atomic
from stylepuppet.animation.look import LookFace, face68, net_points
from stylepuppet.animation.networks import Networks
from stylepuppet.animation.start_face import choose_start_face
from stylepuppet.animation.state import TRACK
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import ConfigError
from stylepuppet.face.align import face_outline, from_aligned, to_aligned
from stylepuppet.face.motion import choose_reference, relative_motion, rigid_fit
from stylepuppet.face.smoothing import gaussian_smooth
from stylepuppet.face.track import FaceTrack, aligned_frames, track_video
from stylepuppet.images import to_tensor, to_unit
from stylepuppet.landmarks.framing import box_from_points
from stylepuppet.landmarks.net import LandmarkNet, jittered_points
from stylepuppet.landmarks.scheme import GROUPS
from stylepuppet.optim.objective import LandmarkObjective
from stylepuppet.timing import StageClock

#: Least size the driving frames are aligned at for reading their landmarks (relative form). A small
#: generator's size would blur the driver's face before the net sees it.
READ_SIZE = 256
#: The driver's landmarks are the mean read-out over this many random framings (±READ_SHIFT·side,
#: ±READ_SCALE·side), as one framing's read-out carries its own error. On d3, the mesh's mouth
#: opening of the driver correlated 0.85 with dlib's from one framing and 0.90 from 8 to 16.
READ_FRAMINGS = 8
READ_SHIFT = 0.1
READ_SCALE = 0.2
#: The arrays of targets.npz that a run may lack.
OPTIONAL = ("points", "look", "start", "look_quad", "faces68", "base68", "paste_quads", "outlines")


# ---------------------------------------------------------------------------------------------- stage 1: track


def face_track(cfg: AnimateConfig, driving: Path, out: Path, track_path: Path | None, reuse: bool,
               progress: bool) -> FaceTrack:
    """The driving face track of the run's window: a given track.npz (which must start at ``cfg.start``;
    it is cut to the run's length), the one this run saved in OUT, or a new one (the caller saves it to
    OUT/track.npz once the run has a frame to show)."""
    saved = out / TRACK
    if track_path is not None:
        track = FaceTrack.load(track_path)
        limit = cfg.frame_count_limit
        return track if limit is None else track.first(limit)
    if reuse and saved.exists():
        return FaceTrack.load(saved)
    return track_video(driving, backend=cfg.track.detector, start=cfg.start, max_frames=cfg.frame_count_limit,
                       smooth=cfg.track.smooth, progress=progress)


# ---------------------------------------------------------------------------------------------- stage 2: targets


@dataclass
class Targets:
    """Per-run landmark targets in aligned generator pixels (saved to OUT/targets.npz)."""

    centres: np.ndarray  # [T, 2] framing of G(w) (and the driving frame) for the landmark net
    sides: np.ndarray  # [T]
    points: np.ndarray | None  # [T, P, 2] relative form: where G(w)'s landmarks should be
    look: np.ndarray | None  # [R, R, 3] aligned look image (keep-identity)
    quads: np.ndarray  # [T, 4, 2] driving alignment quads (source pixels)
    fps: float
    audio: str  # driving file to copy audio from ("" for none)
    start: np.ndarray | None = None  # [num_ws, dim] free mode's chosen first-frame start (None: the mean)
    look_quad: np.ndarray | None = None  # [4, 2] what aligned the look (look-image pixels, FFHQ corner order)
    faces68: np.ndarray | None = None  # [T, 68, 2] iBUG-68 points of each frame's target: the identity chip
    base68: np.ndarray | None = None  # [68, 2] the same of the base face (the look or the start face)
    paste_quads: np.ndarray | None = None  # [T, 4, 2] where G's square output lies in each driving frame
    outlines: np.ndarray | None = None  # [T, K, 2] the face's outline in G's output (face_outline), per frame

    def save(self, path: Path) -> None:
        arrays = {"centres": self.centres, "sides": self.sides, "quads": self.quads,
                  "fps": np.float64(self.fps), "audio": np.array(self.audio)}
        for name in OPTIONAL:
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        atomic.save_npz(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Targets:
        with np.load(path) as z:
            return cls(z["centres"], z["sides"], quads=z["quads"], fps=float(z["fps"]), audio=str(z["audio"]),
                       **{name: z.get(name) for name in OPTIONAL})


def _framing(obj: LandmarkObjective, boxes: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    centre, side = obj.framing(torch.as_tensor(boxes, dtype=torch.float32, device=device))
    return centre.cpu().numpy(), side.cpu().numpy()


@torch.no_grad()
def driver_points(net: LandmarkNet, driving: Path, start: int, quads: np.ndarray, centres: np.ndarray,
                  sides: np.ndarray, size: int, device: torch.device) -> np.ndarray:
    """The landmark net's points [T, P, 2] of the driving frames, aligned like FFHQ and framed at
    ``centres`` / ``sides`` (generator pixels at ``size``), returned in generator pixels.

    The frames are aligned and read at ``max(size, READ_SIZE)``, so the read-out sees the driver's
    face as sharp as the video gives it whatever the generator's resolution, and each frame's points
    are averaged over :data:`READ_FRAMINGS` framings drawn with a generator seeded by the frame index.
    """
    read = max(size, READ_SIZE)
    k = read / size
    points = np.zeros((len(quads), net.num_points, 2), dtype=np.float32)
    for t, crop in enumerate(aligned_frames(driving, quads, read, start=start)):
        unit = to_unit(to_tensor(crop.image, device))
        c = torch.as_tensor((centres[t:t + 1] + 0.5) * k - 0.5, device=device)
        s = torch.as_tensor(sides[t:t + 1] * k, device=device)
        seen = jittered_points(net, unit, c, s, torch.Generator().manual_seed(t), READ_SHIFT, READ_SCALE,
                               READ_FRAMINGS).mean(dim=0)[0]
        points[t] = (seen.cpu().numpy() + 0.5) / k - 0.5
    return points


def square_quads(quads: np.ndarray, size: int, linear: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Where G's ``size``² output lies in each driving frame [T, 4, 2] (source pixels, FFHQ corner order), when
    G's pixel p sits at ``p @ linear.T + shift`` in the frames' aligned crops of ``quads`` [T, 4, 2]."""
    lo, hi = -0.5, size - 0.5
    corners = np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]]) @ np.asarray(linear).T + shift
    return from_aligned(np.broadcast_to(corners, (len(quads), 4, 2)), quads, size)


def build_targets(cfg: AnimateConfig, nets: Networks, obj: LandmarkObjective, track: FaceTrack, driving: Path,
                  look: LookFace | None, device: torch.device, progress: bool = False,
                  clock: StageClock | None = None) -> Targets:
    """Stage 2 (see the module docstring). ``look``: the framed look (keep-identity mode); ``clock``: receives
    the start face's stages (:func:`~stylepuppet.animation.start_face.choose_start_face`).

    For paste-back it also records where G's output lies in the full pictures: in each driving frame (the
    driver's smoothed quads, and in the relative form the map from the base face onto the driver's reference
    face on their rigid points, as the motion is laid on) and in the look image, and the face's outline in
    G's output per frame (where G's landmarks should be; in the heat-map form, the driver's aligned ones)."""
    size = nets.generator.img_resolution
    quads = np.asarray(track.quads, dtype=np.float64)
    landmarks = np.asarray(track.landmarks, dtype=np.float64)
    t_count = len(quads)
    aligned_lm = to_aligned(landmarks, quads, size)
    boxes = box_from_points(torch.as_tensor(aligned_lm, dtype=torch.float32)).numpy()
    centres, sides = _framing(obj, boxes, device)
    base_points = None  # [1, P, 2]: the landmark net's points of the base face
    if look is not None:
        look_centre, look_side, base_points = net_points(obj, to_unit(to_tensor(look.image, device)), look.points,
                                                         device)
    points = start_latent = None
    paste_quads, outlines = quads, face_outline(aligned_lm, GROUPS)  # heat-map form: G draws the aligned driver
    if cfg.landmarks.form == "relative":
        driver = driver_points(obj.net, driving, cfg.start, quads, centres, sides, size, device)
        # The net's points on the driving crops carry per-frame detector noise: smooth them in time as
        # strongly as the track's landmarks (σ = 0, the seed's setting, keeps them raw).
        driver = gaussian_smooth(driver, cfg.track.smooth)
        groups = obj.net.groups
        ref = (cfg.landmarks.reference if cfg.landmarks.reference is not None
               else choose_reference(driver, track.fps, groups))
        if ref >= t_count:
            raise ConfigError(f"landmarks.reference: frame {ref} is outside the {t_count} frames of this run")
        if cfg.mode == "keep-identity":
            assert look is not None and base_points is not None
            base_centre, base_side = look_centre.cpu().numpy(), look_side.cpu().numpy()
        else:  # free: the generator's start face (rendered before any noise is optimised)
            face = choose_start_face(cfg, nets.generator, obj, driver, ref, centres[ref:ref + 1], sides[ref:ref + 1],
                                     device, progress, clock, nets.identity)
            start_latent = face.latent
            base_centre, base_side, base_points = face.centre.cpu().numpy(), face.side.cpu().numpy(), face.points[None]
        points = relative_motion(driver, base_points[0].cpu().numpy(), ref, groups=groups,
                                 strength=cfg.landmarks.strength).astype(np.float32)
        centres = np.repeat(base_centre, t_count, axis=0)
        sides = np.repeat(base_side, t_count, axis=0)
        base = base_points[0].cpu().numpy()
        paste_quads = square_quads(quads, size, *rigid_fit(base, driver[ref], groups))
        outlines = face_outline(points, groups)
    faces68 = base68 = None
    if base_points is not None and getattr(obj.net, "ibug68", None) is not None:
        base68 = face68(obj, base_points)[0].cpu().numpy()
        faces68 = (face68(obj, torch.from_numpy(points)).numpy() if points is not None
                   else np.repeat(base68[None], t_count, axis=0))
    return Targets(centres.astype(np.float32), sides.astype(np.float32), points,
                   None if look is None else look.image, quads.astype(np.float32), float(track.fps), str(driving),
                   None if start_latent is None else start_latent.cpu().numpy(),
                   None if look is None else look.quad, faces68, base68, paste_quads.astype(np.float32),
                   outlines.astype(np.float32))
