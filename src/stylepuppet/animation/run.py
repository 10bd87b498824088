"""The animation pipeline: look image + driving video -> per-frame latents -> rendered video.

Stages (each reads what the previous one wrote, so a run can stop and resume anywhere):

1. **Track** the driving face (or reuse a ``track.npz``): smoothed alignment quads and landmarks.
2. **Targets**: align each driving frame like FFHQ at the generator's resolution and derive the
   landmark targets in aligned pixels — the framing of the face for the landmark net, and for the
   relative form the landmark net's points moved by the driver's motion onto a base face (the look
   image's in keep-identity mode, the generator's starting face in free mode). Saved to
   ``OUT/targets.npz``.
3. **Project** every frame (:class:`~stylepuppet.optim.projector.Projector`); after each frame the state
   (latents so far, frozen noise, loss terms, a fingerprint of config + inputs) is written
   atomically to ``OUT/state.npz``. Running the same command again continues from there.
4. **Render** ``animation.mp4`` (driving fps × k, k − 1 interpolated sub-frames, driving audio),
   ``side_by_side.mp4``, ``latents.npz`` and ``config.json``, all with the noise frozen after frame 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from stylepuppet import atomic
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import ConfigError, MediaError
from stylepuppet.landmarks.framing import box_from_points
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.animation.networks import Networks, load_networks
from stylepuppet.optim.objective import LandmarkObjective, to_unit
from stylepuppet.optim.projector import Projector, predicted_start

STATE, LATENTS, CONFIG, TRACK, TARGETS = "state.npz", "latents.npz", "config.json", "track.npz", "targets.npz"
ANIMATION, SIDE_BY_SIDE = "animation.mp4", "side_by_side.mp4"
TERM_NAMES = ("total", "landmark", "look", "smoothness", "fidelity")


# ---------------------------------------------------------------------------------------------- small helpers


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (or of a folder's files, in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def fingerprint(cfg: AnimateConfig, inputs: dict[str, Path | None]) -> str:
    """What decides the latents: the resolved config (but the sub-frame count and the latent filter,
    which only change the rendering) and the content of every input file."""
    h = hashlib.sha256(dataclasses.replace(cfg, subframes=1, latent_smooth=0.0).to_json().encode())
    for name, path in sorted(inputs.items()):
        h.update(f"{name}={file_digest(path) if path is not None else '-'};".encode())
    return h.hexdigest()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator images [N, 3, R, R] in [-1, 1] -> uint8 [N, R, R, 3] (NVIDIA's rounding)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [R, R, 3] -> [1, 3, R, R] in [-1, 1]."""
    return torch.from_numpy(frame.copy()).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1


def stamp_untrained(frame: np.ndarray) -> np.ndarray:
    """Write "UNTRAINED" across the top of a frame, so nobody mistakes such output for a result."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    size = max(8, frame.shape[1] // 8)
    font = ImageFont.load_default(size=size)
    draw.rectangle([0, 0, frame.shape[1], size + 4], fill=(200, 0, 0))
    draw.text((2, 1), "UNTRAINED", fill=(255, 255, 255), font=font)
    return np.asarray(img)


def draw_points(frame: np.ndarray, points: np.ndarray, colour: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Small dots at points [P, 2] (viewing only: never on an image that feeds a loss)."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    r = max(1.0, frame.shape[0] / 256)
    for x, y in points:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return np.asarray(img)


def interpolate_latents(ws: torch.Tensor, k: int, generator: LatentGenerator) -> Iterator[torch.Tensor]:
    """Latents of the k frames rendered per driving frame i: ws[i] blended towards ws[i+1] at j/k
    (the last frame is held), kept on the generator's latent support."""
    t = len(ws)
    for i in range(t):
        nxt = ws[min(i + 1, t - 1)]
        fr = torch.arange(k, dtype=ws.dtype)[:, None, None] / k
        yield generator.constrain(ws[i][None] * (1 - fr) + nxt[None] * fr)


def smooth_latents(ws: torch.Tensor, sigma: float, generator: LatentGenerator) -> torch.Tensor:
    """Latents [T, num_ws, dim] filtered over time by the track's Gaussian (σ = ``sigma`` frames, ends
    point-reflected so a steady drift passes unchanged), kept on the generator's latent support; σ = 0
    returns them unchanged."""
    if sigma <= 0 or len(ws) < 2:
        return ws
    from stylepuppet.face.smoothing import gaussian_smooth

    filtered = gaussian_smooth(ws.cpu().numpy(), sigma)
    return generator.constrain(torch.from_numpy(filtered).to(ws))


# ---------------------------------------------------------------------------------------------- stage 1: track


def face_track(cfg: AnimateConfig, driving: Path, out: Path, track_path: Path | None, reuse: bool, progress: bool):
    """The driving face track of the run's window: a given track.npz (which must start at ``cfg.start``;
    it is cut to the run's length), the one this run saved in OUT, or a new one (saved to OUT/track.npz)."""
    from stylepuppet.face.track import FaceTrack, track_video

    saved = out / TRACK
    if track_path is not None:
        track = FaceTrack.load(track_path)
        limit = cfg.frame_count_limit
        if limit is not None and track.num_frames > limit:
            track = dataclasses.replace(track, landmarks_raw=track.landmarks_raw[:limit],
                                        detected=track.detected[:limit], landmarks=track.landmarks[:limit],
                                        quads=track.quads[:limit])
        return track
    if reuse and saved.exists():
        return FaceTrack.load(saved)
    track = track_video(driving, backend=cfg.track.detector, start=cfg.start, max_frames=cfg.frame_count_limit,
                        smooth=cfg.track.smooth, progress=progress)
    track.save(saved)
    return track


def aligned_frames(driving: Path, start: int, quads: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Driving frames from ``start`` on, frame ``start + t`` aligned by ``quads[t]`` to size × size."""
    from stylepuppet.face.align import align_crop
    from stylepuppet.video import open_frames

    with open_frames(driving, start=start, max_frames=len(quads)) as frames:
        for t, frame in enumerate(frames):
            if t >= len(quads):
                break
            yield align_crop(frame, quads[t], size).image


def look_face(look: Path, cfg: AnimateConfig, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The look image aligned like FFHQ at ``size`` and its 68 landmarks in aligned pixels (NoFaceError if none)."""
    from stylepuppet.face.align import align_crop, ffhq_quad, to_aligned
    from stylepuppet.face.detect import detect_image, make_detector
    from stylepuppet.video import load_image

    image = load_image(look)
    face = detect_image(image, make_detector(cfg.track.detector), what=f"the look image {look}")
    quad = ffhq_quad(face.points)
    return align_crop(image, quad, size).image, to_aligned(face.points, quad, size)


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

    def save(self, path: Path) -> None:
        arrays = {"centres": self.centres, "sides": self.sides, "quads": self.quads,
                  "fps": np.float64(self.fps), "audio": np.array(self.audio)}
        for name in ("points", "look", "start"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        atomic.save_npz(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Targets:
        with np.load(path) as z:
            return cls(z["centres"], z["sides"], z.get("points"), z.get("look"), z["quads"], float(z["fps"]),
                       str(z["audio"]), z.get("start"))


def _framing(obj: LandmarkObjective, boxes: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    centre, side = obj.framing(torch.as_tensor(boxes, dtype=torch.float32, device=device))
    return centre.cpu().numpy(), side.cpu().numpy()


#: Least size the driving frames are aligned at for reading their landmarks (relative form). A small
#: generator's size would blur the driver's face before the net sees it.
READ_SIZE = 256
#: The driver's landmarks are the mean read-out over this many random framings (±READ_SHIFT·side,
#: ±READ_SCALE·side), as one framing's read-out carries its own error. On d3, the mesh's mouth
#: opening of the driver correlated 0.85 with dlib's from one framing and 0.90 from 8 to 16.
READ_FRAMINGS = 8
READ_SHIFT = 0.1
READ_SCALE = 0.2


def driver_points(obj: LandmarkObjective, driving: Path, start: int, quads: np.ndarray, centres: np.ndarray,
                  sides: np.ndarray, size: int, device: torch.device) -> np.ndarray:
    """The landmark net's points [T, P, 2] of the driving frames, aligned like FFHQ and framed at
    ``centres`` / ``sides`` (generator pixels at ``size``), returned in generator pixels.

    The frames are aligned and read at ``max(size, READ_SIZE)``, so the read-out sees the driver's
    face as sharp as the video gives it whatever the generator's resolution, and each frame's points
    are averaged over :data:`READ_FRAMINGS` framings drawn with a generator seeded by the frame index.
    """
    from stylepuppet.landmarks.framing import jitter_framing

    read = max(size, READ_SIZE)
    k = read / size
    points = np.zeros((len(quads), obj.net.num_points, 2), dtype=np.float32)
    for t, frame in enumerate(aligned_frames(driving, start, quads, read)):
        unit = to_unit(to_tensor(frame, device))
        c = torch.as_tensor((centres[t:t + 1] + 0.5) * k - 0.5, device=device)
        s = torch.as_tensor(sides[t:t + 1] * k, device=device)
        c, s = jitter_framing(c, s, torch.Generator().manual_seed(t), READ_SHIFT, READ_SCALE, READ_FRAMINGS)
        seen = obj.points(unit.expand(READ_FRAMINGS, -1, -1, -1), c, s).mean(dim=0)
        points[t] = (seen.cpu().numpy() + 0.5) / k - 0.5
    return points


def build_targets(cfg: AnimateConfig, nets: Networks, obj: LandmarkObjective, track, driving: Path,
                  look: tuple[np.ndarray, np.ndarray] | None, device: torch.device, progress: bool = False) -> Targets:
    """Stage 2 (see the module docstring). ``look``: the aligned look image and its 68 landmarks
    (keep-identity mode). Deterministic: a resumed run rebuilds the same targets."""
    from stylepuppet.face.align import to_aligned
    from stylepuppet.face.motion import choose_reference, relative_motion
    from stylepuppet.face.smoothing import gaussian_smooth

    size = nets.generator.img_resolution
    quads = np.asarray(track.quads, dtype=np.float64)
    landmarks = np.asarray(track.landmarks, dtype=np.float64)
    t_count = len(quads)
    aligned_lm = to_aligned(landmarks, quads, size)
    boxes = box_from_points(torch.as_tensor(aligned_lm, dtype=torch.float32)).numpy()
    centres, sides = _framing(obj, boxes, device)
    look_img = look_box = None
    if look is not None:
        look_img, look_lm = look
        look_box = box_from_points(torch.as_tensor(look_lm[None], dtype=torch.float32)).numpy()
    points = start_latent = None
    if cfg.landmarks.form == "relative":
        driver = driver_points(obj, driving, cfg.start, quads, centres, sides, size, device)
        # The net's points on the driving crops carry per-frame detector noise: smooth them in time as
        # strongly as the track's landmarks (σ = 0, the seed's setting, keeps them raw).
        driver = gaussian_smooth(driver, cfg.track.smooth)
        groups = obj.net.groups
        ref = (cfg.landmarks.reference if cfg.landmarks.reference is not None
               else choose_reference(driver, track.fps, groups))
        if ref >= t_count:
            raise ConfigError(f"landmarks.reference: frame {ref} is outside the {t_count} frames of this run")
        if cfg.mode == "keep-identity":
            assert look_img is not None and look_box is not None
            base_centre, base_side = _framing(obj, look_box, device)
            base_image = to_unit(to_tensor(look_img, device))
            bc, bs = torch.as_tensor(base_centre, device=device), torch.as_tensor(base_side, device=device)
            base = obj.points(base_image, bc, bs)[0].cpu().numpy()
        else:  # free: the generator's starting face (rendered before any noise is optimised)
            start_latent, bc, bs, base_t = free_base(cfg, nets.generator, obj, driver, ref, centres[ref:ref + 1],
                                                     sides[ref:ref + 1], device, progress)
            base_centre, base_side, base = bc.cpu().numpy(), bs.cpu().numpy(), base_t.cpu().numpy()
        points = relative_motion(driver, base, ref, groups=groups,
                                 strength=cfg.landmarks.strength).astype(np.float32)
        centres = np.repeat(base_centre, t_count, axis=0)
        sides = np.repeat(base_side, t_count, axis=0)
    return Targets(centres.astype(np.float32), sides.astype(np.float32), points, look_img, quads.astype(np.float32),
                   float(track.fps), str(driving), None if start_latent is None else start_latent.cpu().numpy())


def free_base(cfg: AnimateConfig, generator: LatentGenerator, obj: LandmarkObjective, driver: np.ndarray, ref: int,
              centre: np.ndarray, side: np.ndarray, device: torch.device,
              progress: bool = False) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Free mode's start latent [num_ws, dim] (None: the mean), the framing of G's face (centre [1, 2],
    side [1]) and its points [P, 2] there (see :mod:`stylepuppet.animation.start_face`).

    ``driver``: the driver's points [T, P, 2], framed at its reference frame ``ref``'s ``centre`` [1, 2] /
    ``side`` [1].
    """
    from stylepuppet.animation.start_face import (
        calibrated_framing,
        choose_start,
        most_expressive_frame,
        rehearsal_share,
    )
    from stylepuppet.face.motion import RIGID_GROUPS, relative_motion

    ref_points = torch.as_tensor(driver[ref], dtype=torch.float32, device=device)
    c = torch.as_tensor(centre, dtype=torch.float32, device=device)
    s = torch.as_tensor(side, dtype=torch.float32, device=device)
    rigid = torch.zeros(obj.net.num_points, device=device)
    for name in RIGID_GROUPS:
        rigid[torch.as_tensor(obj.net.groups[name], dtype=torch.long)] = 1.0
    if cfg.start_candidates == 0:
        latents = generator.mean_latent().to(device).reshape(1, 1, -1).expand(1, generator.num_ws, -1)
    else:
        latents = choose_start(generator, obj, ref_points, c, s, rigid, cfg.start_candidates, cfg.seed,
                               keep=max(1, cfg.start_rehearsal))
    with torch.no_grad():
        images = to_unit(generator.render(latents, noise_mode="const"))
    bc, bs, base = calibrated_framing(obj, images, ref_points, c, s, rigid)
    best = 0
    if len(latents) > 1:
        driver_t = torch.as_tensor(driver, dtype=torch.float32, device=device)
        frame = most_expressive_frame(driver_t, ref, obj.point_weights)
        shares = []
        for k in tqdm(range(len(latents)), unit="face", disable=not progress, desc="rehearse start faces",
                      leave=False):
            goal = relative_motion(driver[[ref, frame]], base[k].cpu().numpy(), 0, groups=obj.net.groups,
                                   strength=cfg.landmarks.strength)[1]
            targets = obj.targets_from_points(torch.as_tensor(goal[None], dtype=torch.float32, device=device),
                                              bc[k:k + 1], bs[k:k + 1])
            projector = Projector(generator, obj, cfg.loss, cfg.schedule, seed=cfg.seed, anchor=latents[k],
                                  device=device)
            shares.append(rehearsal_share(generator, obj, projector, latents[k:k + 1], targets, cfg.seed))
        best = int(np.argmin(shares))
    start = None if cfg.start_candidates == 0 else latents[best]
    return start, bc[best:best + 1], bs[best:best + 1], base[best]


# ---------------------------------------------------------------------------------------------- stage 3: state


#: Frames per state chunk file: a save after each frame rewrites at most this many frames' latents.
CHUNK = 32


def chunk_folder(path: Path) -> Path:
    """Where the state file ``path`` (``OUT/state.npz``) keeps its chunks of per-frame results."""
    return path.with_name(f"{path.stem}-frames")


@dataclass
class RunState:
    """Latents and loss terms of the frames done so far, and the noise frozen after frame 0.

    On disk the state is a header ``OUT/state.npz`` (fingerprint, noise) and the frames in chunk
    files of :data:`CHUNK` frames (``OUT/state-frames/000000.npz``, …). :meth:`save` writes only
    what changed since the last save — the header when the noise dict was replaced, and the chunks
    holding new frames — so saving after each frame costs the same at frame 10 and at frame 10 000
    (rewriting every latent each frame wrote O(T²) bytes over a run). Every file is written
    atomically (temporary file, then rename), the header before the chunks: a crash leaves the
    frames of complete chunk writes, and the rest are recomputed bit-identically on resume.
    """

    fingerprint: str
    ws: list[torch.Tensor]
    terms: dict[str, list[float]]
    noise: dict[str, np.ndarray]
    _saved_frames: int = dataclasses.field(default=0, repr=False, compare=False)
    _saved_noise: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def done(self) -> int:
        return len(self.ws)

    def save(self, path: Path) -> None:
        if self._saved_noise is not self.noise:
            arrays: dict[str, np.ndarray] = {"fingerprint": np.array(self.fingerprint), "chunk": np.int64(CHUNK)}
            for name, value in self.noise.items():
                arrays[f"noise/{name}"] = value
            atomic.save_npz(path, **arrays)
            self._saved_noise = self.noise
        folder = chunk_folder(path)
        first = self._saved_frames // CHUNK
        if first * CHUNK < self.done:
            folder.mkdir(exist_ok=True)
        for c in range(first, -(-self.done // CHUNK)):
            lo, hi = c * CHUNK, min((c + 1) * CHUNK, self.done)
            chunk = {"fingerprint": np.array(self.fingerprint), "ws": torch.stack(self.ws[lo:hi]).numpy()}
            for name, values in self.terms.items():
                chunk[f"loss/{name}"] = np.asarray(values[lo:hi], dtype=np.float64)
            atomic.save_npz(folder / f"{c:06d}.npz", **chunk)
        self._saved_frames = self.done

    @classmethod
    def load(cls, path: Path) -> RunState:
        """The header and the consecutive complete frames of its chunks (a short chunk ends the run)."""
        with np.load(path) as z:
            fp = str(z["fingerprint"])
            noise = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("noise/")}
            size = int(z["chunk"])
        ws: list[torch.Tensor] = []
        terms: dict[str, list[float]] = {}
        folder = chunk_folder(path)
        while (folder / f"{len(ws) // size:06d}.npz").is_file() and len(ws) % size == 0:
            with np.load(folder / f"{len(ws) // size:06d}.npz") as z:
                if str(z["fingerprint"]) != fp:
                    raise ValueError(f"{folder} holds frames of another run")
                for k in z.files:
                    if k.startswith("loss/"):
                        terms.setdefault(k.split("/", 1)[1], []).extend(z[k].tolist())
                ws.extend(torch.from_numpy(w.copy()) for w in z["ws"])
        return cls(fp, ws, terms, noise, len(ws), noise)

    @staticmethod
    def remove(path: Path) -> None:
        """Delete a saved state (header and chunks)."""
        path.unlink(missing_ok=True)
        folder = chunk_folder(path)
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()


def restore_noise(generator: LatentGenerator, noise: dict[str, np.ndarray]) -> None:
    buffers = generator.noise_buffers()
    if set(buffers) != set(noise):
        raise MediaError("the saved noise buffers do not match the generator; rerun with --restart")
    with torch.no_grad():
        for name, buf in buffers.items():
            buf.copy_(torch.from_numpy(noise[name]).to(buf.device, buf.dtype))


def snapshot_noise(generator: LatentGenerator) -> dict[str, np.ndarray]:
    return {name: buf.detach().cpu().numpy().copy() for name, buf in generator.noise_buffers().items()}


# ---------------------------------------------------------------------------------------------- stage 4: render


def render_video(generator: LatentGenerator, ws: torch.Tensor, path: Path, fps: float, subframes: int, *,
                 audio_from: Path | None = None, audio_start: float = 0.0, stamp: bool = False,
                 device: torch.device | str = "cpu") -> int:
    """Render latents [T, num_ws, dim] with k = ``subframes`` frames per latent to an mp4 at fps × k."""
    from stylepuppet.video import VideoWriter

    count = 0
    audio = audio_from if audio_from is not None and audio_from.is_file() else None
    with VideoWriter(path, fps * subframes, audio_from=audio, audio_start=audio_start) as writer:
        for batch in interpolate_latents(ws, subframes, generator):
            with torch.inference_mode():
                frames = to_uint8(generator.render(batch.to(device), noise_mode="const"))
            for frame in frames:
                writer.write(stamp_untrained(frame) if stamp else frame)
                count += 1
    return count


def render_side_by_side(generator: LatentGenerator, ws: torch.Tensor, targets: Targets, cfg: AnimateConfig,
                        driving: Path, path: Path, *, stamp: bool, device: torch.device,
                        shown: np.ndarray | None = None) -> None:
    """aligned look | aligned driving frame | output, one row per driving frame at the driving fps;
    the relative form's target landmarks (those of index ``shown``, default all) are drawn on the
    output for viewing."""
    from stylepuppet.video import VideoWriter

    size = generator.img_resolution
    with VideoWriter(path, targets.fps) as writer:
        for t, frame in enumerate(aligned_frames(driving, cfg.start, targets.quads, size)):
            with torch.inference_mode():
                out = to_uint8(generator.render(ws[t:t + 1].to(device), noise_mode="const"))[0]
            if targets.points is not None:
                out = draw_points(out, targets.points[t] if shown is None else targets.points[t][shown])
            if stamp:
                out = stamp_untrained(out)
            panels = [frame, out] if targets.look is None else [targets.look, frame, out]
            writer.write(np.concatenate(panels, axis=1))


# ---------------------------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class AnimateResult:
    """What a run produced and how it went."""

    out: Path
    frames: int
    resumed_from: int
    seconds: float
    mean_terms: dict[str, float]
    untrained: tuple[str, ...]

    def summary(self) -> str:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in self.mean_terms.items())
        resumed = f" (resumed at frame {self.resumed_from})" if self.resumed_from else ""
        return (f"animated {self.frames} frames in {self.seconds:.1f} s{resumed}; mean loss terms: {terms}; "
                f"outputs in {self.out}")


def _check_inputs(cfg: AnimateConfig, look: Path | None, driving: Path) -> None:
    if cfg.mode == "keep-identity" and look is None:
        raise ConfigError("keep-identity mode needs a look image: give --look IMAGE, or use --mode free")
    for what, path in (("driving video", driving), ("look image", look)):
        if path is not None and not path.exists():
            raise MediaError(f"{what} not found: {path}")


def _open_state(out: Path, stamp: str, restart: bool, keep: Path | None) -> RunState:
    """The saved state of this very run, or a fresh one (then this run's old files in OUT are removed,
    except ``keep``, a track file the user gave)."""
    path = out / STATE
    if path.exists() and not restart:
        try:
            state = RunState.load(path)
        except (OSError, ValueError, KeyError) as exc:
            raise MediaError(f"cannot read the saved run state {path} ({exc}); rerun with --restart") from None
        if state.fingerprint != stamp:
            raise ConfigError(f"{out} holds a run with other settings or inputs; rerun the same command to "
                              "resume it, add --restart to start over, or choose another -o folder")
        return state
    RunState.remove(path)
    for name in (TARGETS, TRACK, LATENTS, CONFIG, ANIMATION, SIDE_BY_SIDE):
        if keep is None or not (out / name).exists() or not (out / name).samefile(keep):
            (out / name).unlink(missing_ok=True)
    return RunState(stamp, [], {}, {})


def animate(cfg: AnimateConfig, driving: str | Path, out: str | Path, *, look: str | Path | None = None,
            track: str | Path | None = None, restart: bool = False, progress: bool = True) -> AnimateResult:
    """Run (or resume) an animation; see the module docstring. Returns the run's summary."""
    driving = Path(driving)
    look_path = Path(look) if look is not None and cfg.mode == "keep-identity" else None
    track_path = Path(track) if track is not None else None
    _check_inputs(cfg, look_path, driving)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = fingerprint(cfg, {"driving": driving, "look": look_path, "track": track_path})
    state = _open_state(out, stamp, restart, track_path)
    resumed_from = state.done
    device = torch.device(cfg.device)
    began = time.perf_counter()

    nets = load_networks(cfg)
    gen = nets.generator
    obj = LandmarkObjective(nets.landmark_net, cfg.landmarks, heatmap_renderer=nets.heatmap_renderer, device=device)
    resuming = (out / STATE).exists()
    if resuming and (out / TARGETS).exists():
        targets = Targets.load(out / TARGETS)
    else:
        look_data = look_face(look_path, cfg, gen.img_resolution) if look_path is not None else None
        face = face_track(cfg, driving, out, track_path, resuming, progress)
        targets = build_targets(cfg, nets, obj, face, driving, look_data, device, progress)
        targets.save(out / TARGETS)
        state.save(out / STATE)
    t_count = len(targets.quads)

    look_target = None
    if nets.look is not None:
        assert targets.look is not None
        look_target = nets.look.prepare(to_tensor(targets.look, device))
    anchor = None if targets.start is None else torch.from_numpy(targets.start)
    projector = Projector(gen, obj, cfg.loss, cfg.schedule, look=nets.look, look_target=look_target, seed=cfg.seed,
                          anchor=anchor, device=device)
    if state.done > 0:
        restore_noise(gen, state.noise)

    frames = (aligned_frames(driving, cfg.start + state.done, targets.quads[state.done:], gen.img_resolution)
              if cfg.landmarks.form == "heatmap" else None)
    bar = tqdm(total=t_count, initial=state.done, unit="frame", disable=not progress, desc="animate")
    try:
        for i in range(state.done, t_count):
            c = torch.as_tensor(targets.centres[i:i + 1], device=device)
            s = torch.as_tensor(targets.sides[i:i + 1], device=device)
            if frames is not None:
                frame_targets = obj.targets_from_image(to_unit(to_tensor(next(frames), device)), c, s)
            else:
                assert targets.points is not None
                frame_targets = obj.targets_from_points(torch.as_tensor(targets.points[i:i + 1], device=device), c, s)
            prev = state.ws[-1] if state.ws else None
            init = predicted_start(state.ws, gen) if cfg.schedule.predict else None

            def report(step: int, steps: int, terms: dict[str, float], i: int = i) -> None:
                bar.set_postfix_str(f"frame {i} step {step}/{steps} loss {terms['total']:.4g}")

            result = projector.project(i, frame_targets, prev, init=init, on_step=report if progress else None)
            state.ws.append(result.latent)
            for name in TERM_NAMES:
                state.terms.setdefault(name, []).append(result.terms.get(name, float("nan")))
            if i == 0:
                state.noise = snapshot_noise(gen)
            state.save(out / STATE)
            bar.set_postfix({k: f"{v:.3g}" for k, v in result.terms.items()}, refresh=False)
            bar.update(1)
    finally:
        bar.close()
        if frames is not None:
            frames.close()

    ws = smooth_latents(torch.stack(state.ws), cfg.latent_smooth, gen)
    untrained = bool(nets.untrained)
    fps = targets.fps
    render_video(gen, ws, out / ANIMATION, fps, cfg.subframes, audio_from=Path(targets.audio),
                 audio_start=cfg.start / fps, stamp=untrained, device=device)
    grouped = np.unique(np.concatenate([np.asarray(v, dtype=np.int64) for v in obj.net.groups.values()]))
    render_side_by_side(gen, ws, targets, cfg, driving, out / SIDE_BY_SIDE, stamp=untrained, device=device,
                        shown=grouped)
    save_latents(out / LATENTS, ws, state, cfg, fps, audio=targets.audio)
    atomic.write_text(out / CONFIG, cfg.to_json() + "\n")
    means = {k: float(np.nanmean(v)) for k, v in state.terms.items() if np.isfinite(np.asarray(v)).any()}
    return AnimateResult(out, t_count, resumed_from, time.perf_counter() - began, means, tuple(nets.untrained))


def save_latents(path: Path, ws: torch.Tensor, state: RunState, cfg: AnimateConfig, fps: float, audio: str) -> None:
    """OUT/latents.npz: ws [T, num_ws, dim] as rendered (after the latent filter; num_ws = 1 in W
    space), the frozen noise buffers by name, per-frame final loss terms, and what re-rendering needs
    (config, driving fps, audio source)."""
    arrays: dict[str, np.ndarray] = {"ws": ws.numpy(), "fps": np.float64(fps), "subframes": np.int64(cfg.subframes),
                                     "space": np.array(cfg.space), "config": np.array(cfg.to_json()),
                                     "audio": np.array(audio)}
    for name, value in state.noise.items():
        arrays[f"noise/{name}"] = value
    for name, values in state.terms.items():
        arrays[f"loss/{name}"] = np.asarray(values, dtype=np.float64)
    atomic.save_npz(path, **arrays)


@dataclass(frozen=True)
class SavedLatents:
    """The content of a latents.npz."""

    ws: torch.Tensor
    noise: dict[str, np.ndarray]
    terms: dict[str, np.ndarray]
    config: AnimateConfig
    fps: float
    audio: str


def load_latents(path: str | Path) -> SavedLatents:
    """Read a latents.npz written by :func:`animate` (MediaError if it is not one)."""
    from stylepuppet.config import config_from_dict

    path = Path(path)
    try:
        with np.load(path) as z:
            return SavedLatents(
                torch.from_numpy(z["ws"].copy()),
                {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("noise/")},
                {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("loss/")},
                config_from_dict(json.loads(str(z["config"]))), float(z["fps"]), str(z["audio"]))
    except FileNotFoundError:
        raise MediaError(f"latents file not found: {path}") from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise MediaError(f"{path} is not a stylepuppet latents.npz ({type(exc).__name__}: {exc})") from None


def render_latents(latents: str | Path, out: str | Path, *, network: str | None = None, subframes: int | None = None,
                   device: str | None = None) -> tuple[int, tuple[str, ...]]:
    """Re-render a latents.npz (same generator, the saved frozen noise) to an mp4 without optimising.

    ``network`` defaults to the one the latents were made with; returns (frames written, untrained networks).
    """
    from stylepuppet.animation.networks import UntrainedWarning, load_latent_generator

    saved = load_latents(latents)
    overrides = {k: v for k, v in {"network": network, "subframes": subframes, "device": device}.items()
                 if v is not None}
    cfg = dataclasses.replace(saved.config, **overrides)
    untrained: list[str] = []
    gen = load_latent_generator(cfg, untrained)
    if untrained:
        import warnings

        warnings.warn(f"UNTRAINED networks stand in for missing weights: {', '.join(untrained)}", UntrainedWarning,
                      stacklevel=2)
    expected = (gen.num_ws, gen.latent_dim)
    if tuple(saved.ws.shape[1:]) != expected:
        raise ConfigError(f"the latents are {tuple(saved.ws.shape[1:])} per frame but {cfg.network} in "
                          f"{cfg.space} space takes {expected}; give the network they were made with")
    if saved.noise:
        restore_noise(gen, saved.noise)
    count = render_video(gen, saved.ws, Path(out), saved.fps, cfg.subframes, audio_from=Path(saved.audio),
                         audio_start=cfg.start / saved.fps, stamp=bool(untrained), device=cfg.device)
    return count, tuple(untrained)
