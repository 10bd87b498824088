"""The animation pipeline, its stages in order: look image + driving video -> per-frame latents -> videos.

1. **Track** and 2. **targets** (:mod:`~stylepuppet.animation.targets`): the driving face track and
   every frame's landmark targets, saved to ``OUT/track.npz`` and ``OUT/targets.npz``; in free mode
   the start face is chosen here (:mod:`~stylepuppet.animation.start_face`).
3. **Project** every frame (:class:`~stylepuppet.optim.projector.Projector`); after each frame the state
   (latents so far, frozen noise, loss terms, a fingerprint of config + inputs) is written
   atomically (:mod:`~stylepuppet.animation.state`). Running the same command again continues from there.
4. **Write the outputs** (:mod:`~stylepuppet.animation.outputs`): ``animation.mp4``, ``side_by_side.mp4``,
   ``latents.npz`` and ``config.json``, all rendered with the noise frozen after frame 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stylepuppet.animation.networks import load_networks
from stylepuppet.animation.outputs import FinishedRun, remove_outputs, write_outputs
from stylepuppet.animation.render import smooth_latents
from stylepuppet.animation.state import STATE, TARGETS, RunState, fingerprint, restore_noise, resume, snapshot_noise
from stylepuppet.animation.targets import Targets, build_targets, face_track, look_face
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import ConfigError, MediaError
from stylepuppet.face.track import aligned_frames
from stylepuppet.images import to_tensor, to_unit
from stylepuppet.optim.objective import LandmarkObjective
from stylepuppet.optim.projector import Projector, predicted_start

#: The loss terms recorded per frame (NaN where a term was not computed).
TERM_NAMES = ("total", "landmark", "look", "smoothness", "fidelity")


@dataclass(frozen=True)
class AnimateResult:
    """What a run produced and how it went: the output folder, the frames animated (``resumed_from`` of them
    done before this call), the wall time, each loss term's mean over the frames, the untrained stand-ins."""

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
    state = None if restart else resume(out / STATE, stamp)
    resuming = state is not None
    if state is None:
        remove_outputs(out, keep=track_path)
        state = RunState(stamp, [], {}, {})
    resumed_from = state.done
    device = torch.device(cfg.device)
    began = time.perf_counter()

    nets = load_networks(cfg)
    gen = nets.generator
    obj = LandmarkObjective(nets.landmark_net, cfg.landmarks, heatmap_renderer=nets.heatmap_renderer, device=device)
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

    frames = (aligned_frames(driving, targets.quads[state.done:], gen.img_resolution, start=cfg.start + state.done)
              if cfg.landmarks.form == "heatmap" else None)
    bar = tqdm(total=t_count, initial=state.done, unit="frame", disable=not progress, desc="animate")
    try:
        for i in range(state.done, t_count):
            c = torch.as_tensor(targets.centres[i:i + 1], device=device)
            s = torch.as_tensor(targets.sides[i:i + 1], device=device)
            if frames is not None:
                frame_targets = obj.targets_from_image(to_unit(to_tensor(next(frames).image, device)), c, s)
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

    shown = np.unique(np.concatenate([np.asarray(v, dtype=np.int64) for v in obj.net.groups.values()]))
    write_outputs(out, FinishedRun(cfg, driving, look_path, gen,
                                   smooth_latents(torch.stack(state.ws), cfg.latent_smooth, gen), state, targets,
                                   shown, bool(nets.untrained), device))
    means = {k: float(np.nanmean(v)) for k, v in state.terms.items() if np.isfinite(np.asarray(v)).any()}
    return AnimateResult(out, t_count, resumed_from, time.perf_counter() - began, means, tuple(nets.untrained))
