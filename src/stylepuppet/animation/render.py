"""Latents -> frames -> video: sub-frames, the temporal latent filter, the videos of a run, and latents.npz.

Every render uses the generator's noise as it was frozen after frame 0 (restored from the state or
from latents.npz), so re-rendering a run reproduces its frames exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylepuppet import atomic
from stylepuppet.animation.networks import load_latent_generator, warn_untrained
from stylepuppet.animation.paste import PasteData, Picture, picture
from stylepuppet.animation.state import DAMAGED_NPZ, RunState, restore_noise
from stylepuppet.config import AnimateConfig, PasteInto, config_from_dict
from stylepuppet.devices import torch_device
from stylepuppet.errors import ConfigError, MediaError
from stylepuppet.face.smoothing import gaussian_smooth
from stylepuppet.face.track import aligned_frames
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.images import draw_points, labelled_row, stamp_untrained, to_uint8, upscale
from stylepuppet.landmarks.framing import resize_points
from stylepuppet.video import VideoWriter, open_frames

#: Least side of each side_by_side.mp4 panel: a 64² DCGAN face is enlarged 4x to be seen.
SIDE_PANEL = 256


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
    filtered = gaussian_smooth(ws.cpu().numpy(), sigma)
    return generator.constrain(torch.from_numpy(filtered).to(ws))


def render_video(generator: LatentGenerator, ws: torch.Tensor, path: Path, fps: float, subframes: int, *,
                 audio_from: Path | None = None, audio_start: float = 0.0, stamp: bool = False,
                 device: torch.device | str = "cpu") -> int:
    """Render latents [T, num_ws, dim] with k = ``subframes`` frames per latent to an mp4 at fps × k."""
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


def side_by_side_labels(look: bool, show_points: bool) -> tuple[str, ...]:
    """The names of side_by_side.mp4's panels, left to right, as its caption strip shows them."""
    return (*(("look (aligned)",) if look else ()), "driving frame (aligned)", "output",
            *(("output + target points",) if show_points else ()))


def render_side_by_side(generator: LatentGenerator, ws: torch.Tensor, path: Path, *, driving: Path, start: int,
                        quads: np.ndarray, fps: float, look: np.ndarray | None, points: np.ndarray | None,
                        shown: np.ndarray, show_points: bool = False, stamp: bool = False,
                        device: torch.device | str = "cpu") -> None:
    """[aligned look |] aligned driving frame | output [| output + target points], one row per driving frame
    at the driving fps, each panel at least :data:`SIDE_PANEL`² under a strip that names it.

    ``quads`` align the driving frames from ``start``; ``look`` is the aligned look image (None in free
    mode); the target landmarks ``points`` [T, P, 2] (relative form, output pixels) of index ``shown``
    are drawn, with ``show_points``, on a copy of the output in a panel of their own, so the output
    panel always shows the face as it is.
    """
    size = generator.img_resolution
    panel = max(SIDE_PANEL, size)
    labels = side_by_side_labels(look is not None, show_points and points is not None)
    look_panel = upscale(look, panel) if look is not None else None
    with VideoWriter(path, fps) as writer:
        for t, crop in enumerate(aligned_frames(driving, quads, panel, start=start)):
            with torch.inference_mode():
                out = upscale(to_uint8(generator.render(ws[t:t + 1].to(device), noise_mode="const"))[0], panel)
            panels = [crop.image, stamp_untrained(out) if stamp else out]
            if look_panel is not None:
                panels.insert(0, look_panel)
            if show_points and points is not None:
                marked = draw_points(out, resize_points(points[t][shown], size, panel), radius=panel / 160)
                panels.append(stamp_untrained(marked) if stamp else marked)
            writer.write(labelled_row(panels, labels))


def render_full_video(generator: LatentGenerator, ws: torch.Tensor, path: Path, fps: float, subframes: int,
                      picture: Picture, *, audio_from: Path | None = None, audio_start: float = 0.0,
                      stamp: bool = False, device: torch.device | str = "cpu") -> int:
    """Like :func:`render_video`, with every frame pasted back into ``picture`` (at the picture's size); the
    face's place and outline move with the sub-frames as the latents do."""
    count = 0
    audio = audio_from if audio_from is not None and audio_from.is_file() else None
    with VideoWriter(path, fps * subframes, audio_from=audio, audio_start=audio_start) as writer:
        for t, (batch, background) in enumerate(zip(interpolate_latents(ws, subframes, generator), picture.frames())):
            with torch.inference_mode():
                faces = to_uint8(generator.render(batch.to(device), noise_mode="const"))
            for j, face in enumerate(faces):
                frame = picture.paste(background, face, t, j / subframes)
                writer.write(stamp_untrained(frame) if stamp else frame)
                count += 1
    return count


def render_full_side_by_side(generator: LatentGenerator, ws: torch.Tensor, path: Path, *, driving: Path, start: int,
                             fps: float, picture: Picture, stamp: bool, device: torch.device | str = "cpu") -> None:
    """driving frame | output pasted back into ``picture``, whole frames at the height of the picture, one row
    per driving frame at the driving fps."""
    with VideoWriter(path, fps) as writer, open_frames(driving, start=start, max_frames=len(ws)) as drivers:
        for t, (background, frame) in enumerate(zip(picture.frames(), drivers)):
            with torch.inference_mode():
                face = to_uint8(generator.render(ws[t:t + 1].to(device), noise_mode="const"))[0]
            out = picture.paste(background, face, t)
            if stamp:
                out = stamp_untrained(out)
            height = out.shape[0]
            width = max(1, round(frame.shape[1] * height / frame.shape[0]))
            shown = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
            writer.write(np.concatenate([shown, out], axis=1))


# ---------------------------------------------------------------------------------------------- latents.npz


def save_latents(path: Path, ws: torch.Tensor, state: RunState, cfg: AnimateConfig, fps: float, audio: str,
                 driving_digest: str | None = None, paste: PasteData | None = None) -> None:
    """OUT/latents.npz: ws [T, num_ws, dim] as rendered (after the latent filter; num_ws = 1 in W
    space), the frozen noise buffers by name, per-frame final loss terms, what re-rendering needs
    (config, driving fps, audio source, and what paste-back needs), and the driving clip's content digest
    (``evaluate`` checks it)."""
    arrays: dict[str, np.ndarray] = {"ws": ws.numpy(), "fps": np.float64(fps), "subframes": np.int64(cfg.subframes),
                                     "space": np.array(cfg.space), "config": np.array(cfg.to_json()),
                                     "audio": np.array(audio), **(paste.arrays() if paste is not None else {})}
    if driving_digest is not None:
        arrays["driving_digest"] = np.array(driving_digest)
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
    driving_digest: str | None = None  # None in files written before it was recorded
    paste: PasteData | None = None


def load_latents(path: str | Path) -> SavedLatents:
    """Read a latents.npz written by an animation run (MediaError if it is not one, or holds latents or a
    frame rate no video can be rendered from)."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path} is a folder; give the latents.npz file of a run (e.g. {path / 'latents.npz'})")
    try:
        with np.load(path) as z:
            saved = SavedLatents(
                torch.from_numpy(z["ws"].copy()),
                {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("noise/")},
                {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("loss/")},
                config_from_dict(json.loads(str(z["config"]))), float(z["fps"]), str(z["audio"]),
                str(z["driving_digest"]) if "driving_digest" in z.files else None,
                PasteData.from_arrays({k: z[k] for k in z.files if k.startswith("paste/")}))
    except FileNotFoundError:
        raise MediaError(f"latents file not found: {path}") from None
    except (*DAMAGED_NPZ, TypeError) as exc:
        raise MediaError(f"{path} is not a stylepuppet latents.npz ({type(exc).__name__}: {str(exc)[:120]})") from None
    _check_latents(path, saved)
    return saved


def _check_latents(path: Path, saved: SavedLatents) -> None:
    """MediaError for latents no video can be rendered from: not [T, num_ws, dim] numbers, non-finite values
    (a diverged run), or a frame rate that is not a positive number."""
    ws = saved.ws
    if ws.ndim != 3 or 0 in ws.shape or not ws.dtype.is_floating_point:
        raise MediaError(f"{path} holds latents of shape {list(ws.shape)} ({ws.dtype}), not [frames, num_ws, dim] "
                         "numbers; it is damaged or not a stylepuppet latents.npz")
    bad = (~torch.isfinite(ws)).flatten(1).any(dim=1).nonzero().flatten().tolist()
    if bad:
        frames = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise MediaError(f"{path} holds non-finite latents (NaN or infinity) in {len(bad)} of {len(ws)} frames "
                         f"({frames}): the run that wrote it diverged; run it again with lower λs or learning rate")
    if not (math.isfinite(saved.fps) and saved.fps > 0):
        raise MediaError(f"{path} records a frame rate of {saved.fps:g}; it is damaged or not written by "
                         "stylepuppet (a run records its driving video's rate)")
    if any(not np.isfinite(v).all() for v in saved.noise.values()):
        raise MediaError(f"{path} holds non-finite noise buffers; it is damaged, or the run that wrote it "
                         "diverged")


def saved_generator(saved: SavedLatents, cfg: AnimateConfig) -> tuple[LatentGenerator, list[str]]:
    """The generator of ``cfg`` (the saved run's, or another network) with the run's frozen noise, and what
    untrained networks stand in (warned about). ConfigError when its latents are not shaped like the saved ones."""
    untrained: list[str] = []
    generator = load_latent_generator(cfg, untrained)
    if untrained:
        warn_untrained(untrained)
    expected = (generator.num_ws, generator.latent_dim)
    if tuple(saved.ws.shape[1:]) != expected:
        raise ConfigError(f"the latents are {tuple(saved.ws.shape[1:])} per frame but {cfg.network} in "
                          f"{cfg.space} space takes {expected}; give the network they were made with")
    if saved.noise:
        restore_noise(generator, saved.noise)
    return generator, untrained


def render_latents(latents: str | Path, out: str | Path, *, network: str | None = None, subframes: int | None = None,
                   device: str | None = None, paste_back: bool = False, paste_into: PasteInto | None = None) -> int:
    """Re-render a latents.npz (same generator, the saved frozen noise) to an mp4 without optimising; returns
    the number of frames written. ``network`` defaults to the one the latents were made with. ``paste_back``:
    the full-frame video instead (the face pasted back into the look image, or with ``paste_into="driving"``
    into the driving frames)."""
    saved = load_latents(latents)
    overrides = {k: v for k, v in {"network": network, "subframes": subframes, "device": device}.items()
                 if v is not None}
    cfg = dataclasses.replace(saved.config, paste_back=paste_back, paste_into=paste_into, **overrides)
    torch_device(cfg.device)
    full = picture(saved.paste, cfg.picture, cfg.start) if cfg.picture is not None else None
    generator, untrained = saved_generator(saved, cfg)
    common = {"audio_from": Path(saved.audio), "audio_start": cfg.start / saved.fps, "stamp": bool(untrained),
              "device": cfg.device}
    if full is not None:
        return render_full_video(generator, saved.ws, Path(out), saved.fps, cfg.subframes, full, **common)
    return render_video(generator, saved.ws, Path(out), saved.fps, cfg.subframes, **common)
