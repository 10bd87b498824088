"""The animation pipeline, its stages in order: look image + driving video -> per-frame latents -> videos.

0. **Check** every input (the driving clip's window, the look image, a given track against the clip),
   hold the output folder (:mod:`~stylepuppet.animation.folder`: a lock, nothing changed before the
   first frame) and find every weights file the run needs.
1. **Track** and 2. **targets** (:mod:`~stylepuppet.animation.targets`): the driving face track and
   every frame's landmark targets, saved to ``OUT/track.npz`` and ``OUT/targets.npz`` once the first
   frame is optimised; the look is framed the way the generator frames faces
   (:mod:`~stylepuppet.animation.look`), and in free mode the start face is chosen here
   (:mod:`~stylepuppet.animation.start_face`).
3. **The look** (keep-identity): projected alone before any driving frame (or a projection given with
   ``look_latent`` reused), written to ``OUT/look_latent.npz`` and the pictures beside it; frame 0
   starts there and the fidelity term pulls every frame towards it.
4. **Project** every frame (:class:`~stylepuppet.optim.projector.Projector`); after each frame the state
   (latents so far, frozen noise, loss terms, a fingerprint of config + inputs) is written
   atomically (:mod:`~stylepuppet.animation.state`). Running the same command again continues from there.
   A frame whose latent, loss or noise is not finite stops the run (the frames before it stay saved).
5. **Write the outputs** (:mod:`~stylepuppet.animation.outputs`): ``animation.mp4``, ``side_by_side.mp4``,
   ``latents.npz`` and ``config.json``, all rendered with the noise frozen after frame 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stylepuppet.animation.folder import RunFolder, run_folder
from stylepuppet.animation.look import LookFace, LookLatent, look_face, project_look, render_latent, warn_if_undrawable
from stylepuppet.animation.networks import Networks, load_networks
from stylepuppet.animation.outputs import LOOK_LATENT, FinishedRun, write_look, write_outputs
from stylepuppet.animation.render import smooth_latents
from stylepuppet.animation.state import (
    STATE,
    TARGETS,
    TRACK,
    RunState,
    fingerprint,
    read_work_file,
    restore_noise,
    resume,
    snapshot_noise,
)
from stylepuppet.animation.targets import Targets, build_targets, face_track
from stylepuppet.config import AnimateConfig
from stylepuppet.devices import torch_device
from stylepuppet.errors import ConfigError, MediaError, NoFaceError
from stylepuppet.face.track import FaceTrack, aligned_frames
from stylepuppet.images import to_tensor, to_unit
from stylepuppet.optim.objective import IdentityObjective, LandmarkObjective
from stylepuppet.optim.projector import Projector, predicted_start
from stylepuppet.timing import StageClock, now
from stylepuppet.video import content_digest, load_image, open_frames

#: The loss terms recorded per frame (NaN where a term was not computed).
TERM_NAMES = ("total", "landmark", "look", "smoothness", "fidelity", "identity")


@dataclass(frozen=True)
class AnimateResult:
    """What a run produced and how it went: the output folder, the frames animated (``resumed_from`` of them
    done before this call), the wall time, each loss term's mean over the frames, the untrained stand-ins.

    ``stages``: this call's wall and CPU seconds by stage, so a fixed cost can be told from the per-frame
    one: ``prepare`` (networks, track, targets, the look's projection; within it, in free mode,
    ``start_scoring`` and ``start_rehearsal``: the start face's choice), ``frames`` (the frames'
    optimisation) and ``outputs``. ``steps``: the optimisation steps this call's frames ran (fewer than
    scheduled with early stopping)."""

    out: Path
    frames: int
    resumed_from: int
    seconds: float
    mean_terms: dict[str, float]
    untrained: tuple[str, ...]
    stages: StageClock = field(default_factory=StageClock)
    steps: int = 0

    def summary(self) -> str:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in self.mean_terms.items())
        resumed = f" (resumed at frame {self.resumed_from})" if self.resumed_from else ""
        return (f"animated {self.frames} frames in {self.seconds:.1f} s{resumed}; mean loss terms: {terms}; "
                f"outputs in {self.out}")


def _check_inputs(cfg: AnimateConfig, look: Path | None, driving: Path, track: Path | None,
                  look_latent: Path | None) -> None:
    """Read every input once before anything is written or loaded: the driving clip's window, the look image,
    and that a given track was made from this clip's window (MediaError / ConfigError saying what to fix)."""
    if cfg.mode == "keep-identity" and look is None:
        raise ConfigError("keep-identity mode needs a look image: give --look IMAGE, or use --mode free")
    if look_latent is not None and look is None:
        raise ConfigError("--look-latent is a projection of the look image of keep-identity mode; give --look "
                          "IMAGE too, or leave --look-latent out")
    for what, path in (("driving video", driving), ("look image", look), ("track file", track),
                       ("look latent", look_latent)):
        if path is not None and not path.exists():
            raise MediaError(f"{what} not found: {path}")
    with open_frames(driving, start=cfg.start, max_frames=cfg.frame_count_limit) as frames:
        count, size = frames.num_frames, frames.size
    if look is not None:
        load_image(look)
    if track is not None:
        FaceTrack.load(track).check_made_from(track, driving, content_digest(driving), cfg.start, count or 0, size)


def _check_frame(i: int, latent: torch.Tensor, terms: dict[str, float], noise: dict[str, np.ndarray]) -> None:
    """ConfigError when frame ``i``'s optimisation diverged (non-finite latent, loss or frozen noise); the frames
    before it are saved and stay as they were."""
    bad = [name for name, value in terms.items() if not math.isfinite(value)]
    if torch.isfinite(latent).all() and not bad and all(np.isfinite(v).all() for v in noise.values()):
        return
    what = f"loss terms {', '.join(bad)}" if bad else "latent" if not torch.isfinite(latent).all() else "noise"
    raise ConfigError(f"the optimisation diverged at frame {i} (its {what} became NaN or infinite); the {i} "
                      "frame(s) before it are saved; lower the λs (--lambda-*) or --lr and rerun with --restart")


def _commit(folder: RunFolder, face: FaceTrack | None, targets: Targets, fresh: bool, track: Path | None) -> None:
    """Write the run's work files (its first frame is done): its track (unless the user gave one) and targets;
    a fresh run removes the earlier run's state and the track file a given --track replaces."""
    out = folder.path
    folder.commit()
    if face is not None:
        face.save(out / TRACK)
    targets.save(out / TARGETS)
    if fresh:
        RunState.remove(out / STATE)
        if track is not None and (out / TRACK).exists() and not (out / TRACK).samefile(track):
            (out / TRACK).unlink()


def look_projection(cfg: AnimateConfig, nets: Networks, obj: LandmarkObjective, look: Path, given: Path | None,
                    out: Path, reuse: bool, framed: LookFace | None, device: torch.device,
                    progress: bool) -> LookLatent:
    """Stage 3: the look's latent — the one given (checked against the run), the one this run saved, or a new
    projection (written to OUT with its pictures)."""
    if given is not None or (reuse and (out / LOOK_LATENT).exists()):
        path = given if given is not None else out / LOOK_LATENT
        latent = LookLatent.load(path)
        latent.check(cfg, look, path)
        warn_if_undrawable(latent)
        return latent
    framed = framed or look_face(look, cfg, nets.generator)
    bar = tqdm(total=cfg.schedule.steps_first, unit="step", disable=not progress, desc="project the look")

    def report(step: int, steps: int, terms: dict[str, float]) -> None:
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)

    try:
        latent = project_look(cfg, nets, obj, framed, look, device, on_step=report if progress else None)
    finally:
        bar.close()
    write_look(out, framed, latent, nets.generator, device)
    return latent


def identity_objective(cfg: AnimateConfig, nets: Networks, targets: Targets, anchor: torch.Tensor | None,
                       device: torch.device) -> IdentityObjective | None:
    """The identity term of the frames: the reference face is the framed look (keep-identity) or the start face
    (free), read at its own iBUG-68 points; None when its λ is 0."""
    if nets.identity is None or cfg.loss.identity == 0:
        return None
    if targets.faces68 is None or targets.base68 is None:
        raise ConfigError("loss.identity: the identity term frames faces by the landmark net's points of the base "
                          "face (relative form, or a look image); set loss.identity = 0")
    if targets.look is not None:
        image, face = to_unit(to_tensor(targets.look, device)), "look"
    else:
        image = render_latent(nets.generator, (nets.generator.mean_latent() if anchor is None else anchor).to(device))
        face = "start face"
    try:
        return IdentityObjective.of_face(nets.identity, image, torch.as_tensor(targets.base68[None], device=device),
                                         cfg.seed)
    except ValueError as exc:  # the landmark net's points of the face span too little of the image to frame it
        raise NoFaceError(f"the identity term cannot frame the {face} ({exc}): the landmark net found no usable "
                          "face in it; check the landmark net's weights, or set --lambda-identity 0") from exc


def project(cfg: AnimateConfig, look: str | Path, out: str | Path, *, progress: bool = True) -> LookLatent:
    """Stage 3 alone (``stylepuppet project``): frame and project the look, write its files into ``out``."""
    look = Path(look)
    if not look.exists():
        raise MediaError(f"look image not found: {look}")
    cfg = replace(cfg, mode="keep-identity")
    nets = load_networks(cfg)
    device = torch_device(cfg.device)
    obj = LandmarkObjective(nets.landmark_net, cfg.landmarks, heatmap_renderer=nets.heatmap_renderer, device=device)
    with run_folder(Path(out)) as folder:  # one writer at a time, as for animate
        latent = look_projection(cfg, nets, obj, look, None, folder.path, False, None, device, progress)
        folder.commit()
        return latent


def animate(cfg: AnimateConfig, driving: str | Path, out: str | Path, *, look: str | Path | None = None,
            track: str | Path | None = None, look_latent: str | Path | None = None, restart: bool = False,
            progress: bool = True) -> AnimateResult:
    """Run (or resume) an animation; see the module docstring. Returns the run's summary.

    Nothing in ``out`` changes before the inputs are checked, every weights file is found and the first
    frame is optimised (or the look projected: that is work worth keeping, see
    :mod:`~stylepuppet.animation.folder`); an earlier run's outputs stay until this run writes its own."""
    driving = Path(driving)
    look_path = Path(look) if look is not None and cfg.mode == "keep-identity" else None
    track_path = Path(track) if track is not None else None
    latent_path = Path(look_latent) if look_latent is not None else None
    device = torch_device(cfg.device)
    _check_inputs(cfg, look_path, driving, track_path, latent_path)
    out = Path(out)
    with run_folder(out) as folder:
        return _animate(cfg, driving, folder, look_path, track_path, latent_path, restart, progress, device)


def _animate(cfg: AnimateConfig, driving: Path, folder: RunFolder, look_path: Path | None, track_path: Path | None,
             latent_path: Path | None, restart: bool, progress: bool, device: torch.device) -> AnimateResult:
    out = folder.path
    stamp = fingerprint(cfg, {"driving": driving, "look": look_path, "track": track_path,
                              "look_latent": latent_path})
    state = None if restart else resume(out / STATE, stamp)
    fresh = state is None
    if state is None:
        state = RunState(stamp, [], {}, {})
    else:
        folder.commit()
    resumed_from = state.done
    began = time.perf_counter()
    clock, mark = StageClock(), now()

    nets = load_networks(cfg)
    gen = nets.generator
    obj = LandmarkObjective(nets.landmark_net, cfg.landmarks, heatmap_renderer=nets.heatmap_renderer, device=device)
    pending: tuple[FaceTrack | None, Targets] | None = None
    framed = None
    if not fresh and (out / TARGETS).exists():
        targets = read_work_file(out / TARGETS, Targets.load)
    else:
        framed = look_face(look_path, cfg, gen) if look_path is not None else None
        face = face_track(cfg, driving, out, track_path, not fresh, progress)
        targets = build_targets(cfg, nets, obj, face, driving, framed, device, progress, clock)
        pending = (face if track_path is None else None, targets)
        if not fresh:
            _commit(folder, *pending, fresh, track_path)
            pending = None
    t_count = len(targets.quads)

    anchor = None if targets.start is None else torch.from_numpy(targets.start)
    identity = identity_objective(cfg, nets, targets, anchor, device)
    look_latent = None
    if look_path is not None:
        folder.commit()  # a new projection is work worth keeping, whatever happens to the frames
        look_latent = look_projection(cfg, nets, obj, look_path, latent_path, out, not fresh, framed, device,
                                      progress)
        anchor = look_latent.latent
        restore_noise(gen, look_latent.noise)
    look_target = None
    if nets.look is not None:
        assert targets.look is not None
        look_target = nets.look.prepare(to_tensor(targets.look, device))
    projector = Projector(gen, obj, cfg.loss, cfg.schedule, look=nets.look, look_target=look_target,
                          identity=identity, seed=cfg.seed, anchor=anchor, device=device)
    if state.done > 0:
        restore_noise(gen, state.noise)
    if state.carried:
        projector.carried = {k: torch.from_numpy(v).to(device) for k, v in state.carried.items()}

    frames = (aligned_frames(driving, targets.quads[state.done:], gen.img_resolution, start=cfg.start + state.done)
              if cfg.landmarks.form == "heatmap" else None)
    mark = clock.record("prepare", mark)
    steps = 0
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
            if targets.faces68 is not None:
                frame_targets = replace(frame_targets, face68=torch.as_tensor(targets.faces68[i:i + 1], device=device))
            prev = state.ws[-1] if state.ws else None
            init = predicted_start(state.ws, gen) if cfg.schedule.predict else None

            def report(step: int, steps: int, terms: dict[str, float], i: int = i) -> None:
                bar.set_postfix_str(f"frame {i} step {step}/{steps} loss {terms['total']:.4g}")

            # with the look projected first, no frame optimises the noise and frame 0 starts at the look's latent
            first = False if look_latent is not None else None
            result = projector.project(i, frame_targets, prev, init=init, first=first,
                                       on_step=report if progress else None)
            noise = snapshot_noise(gen) if i == 0 else state.noise
            _check_frame(i, result.latent, result.terms, noise)
            steps += result.steps
            state.ws.append(result.latent)
            if projector.carried is not None:
                state.carried = {k: v.cpu().numpy() for k, v in projector.carried.items()}
            for name in TERM_NAMES:
                state.terms.setdefault(name, []).append(result.terms.get(name, float("nan")))
            state.noise = noise
            if pending is not None:
                _commit(folder, *pending, fresh, track_path)
                pending = None
            state.save(out / STATE)
            bar.set_postfix({k: f"{v:.3g}" for k, v in result.terms.items()}, refresh=False)
            bar.update(1)
    finally:
        bar.close()
        if frames is not None:
            frames.close()
    mark = clock.record("frames", mark)

    shown = np.unique(np.concatenate([np.asarray(v, dtype=np.int64) for v in obj.net.groups.values()]))
    write_outputs(out, FinishedRun(cfg, driving, look_path, gen,
                                   smooth_latents(torch.stack(state.ws), cfg.latent_smooth, gen), state, targets,
                                   shown, bool(nets.untrained), device))
    means = {k: float(np.nanmean(v)) for k, v in state.terms.items() if np.isfinite(np.asarray(v)).any()}
    clock.record("outputs", mark)
    return AnimateResult(out, t_count, resumed_from, time.perf_counter() - began, means, tuple(nets.untrained), clock,
                         steps)
