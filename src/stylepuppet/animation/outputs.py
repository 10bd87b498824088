"""Every file of a run folder ``OUT/``, in one list: its name and how it is written.

The outputs are written when the optimisation has finished (or when a finished run is run again,
e.g. with another latent filter), from a :class:`FinishedRun`, in the order listed. A new output is
one more :class:`Output` here with its writer. An output the run's settings do not ask for (the
full-frame videos without paste-back) is not written, and an earlier one is removed, so the folder
always matches its ``config.json``. Files written by a stage along the way (the track,
the targets) or by another command (``stylepuppet evaluate``) are listed without a writer. The run
state has its own files (:class:`~stylepuppet.animation.state.RunState`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylepuppet import atomic
from stylepuppet.animation.look import LookFace, LookLatent
from stylepuppet.animation.paste import PasteData, picture
from stylepuppet.animation.render import (
    render_full_side_by_side,
    render_full_video,
    render_side_by_side,
    render_video,
    save_latents,
)
from stylepuppet.animation.state import TARGETS, TRACK, RunState
from stylepuppet.animation.targets import Targets
from stylepuppet.config import AnimateConfig
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.images import to_uint8
from stylepuppet.video import content_digest, write_png

ANIMATION, SIDE_BY_SIDE, LATENTS, CONFIG = "animation.mp4", "side_by_side.mp4", "latents.npz", "config.json"
EVALUATION, REPORT_HTML, REPORT_JSON = "evaluation.mp4", "report.html", "report.json"
#: The look's projection (keep-identity; ``stylepuppet project`` writes the same files).
LOOK_LATENT, LOOK_ALIGNED = "look_latent.npz", "look_aligned.png"
LOOK_RECONSTRUCTION, LOOK_FIGURES = "look_reconstruction.png", "look_projection.json"
LOOK_FILES = (LOOK_LATENT, LOOK_ALIGNED, LOOK_RECONSTRUCTION, LOOK_FIGURES)
ANIMATION_FULL, SIDE_BY_SIDE_FULL = "animation_full.mp4", "side_by_side_full.mp4"


@dataclass(frozen=True)
class FinishedRun:
    """What the writers get: a run whose every frame is optimised."""

    cfg: AnimateConfig
    driving: Path
    look: Path | None
    generator: LatentGenerator  # with the noise frozen after frame 0
    ws: torch.Tensor  # [T, num_ws, dim] the latents as rendered (after the latent filter)
    state: RunState
    targets: Targets
    shown: np.ndarray  # indices of the target landmarks drawn in the side-by-side video
    untrained: bool  # whether untrained networks stood in (every frame is then stamped)
    device: torch.device

    @property
    def paste(self) -> PasteData | None:
        """What paste-back needs (None for targets made before it existed)."""
        t = self.targets
        if t.paste_quads is None or t.outlines is None:
            return None
        return PasteData(str(self.driving), str(self.look or ""), t.look_quad, t.paste_quads, t.outlines)


def write_animation(run: FinishedRun, path: Path) -> None:
    """driving fps × k, with k − 1 interpolated sub-frames; the driving audio copied."""
    fps = run.targets.fps
    render_video(run.generator, run.ws, path, fps, run.cfg.subframes, audio_from=Path(run.targets.audio),
                 audio_start=run.cfg.start / fps, stamp=run.untrained, device=run.device)


def write_side_by_side(run: FinishedRun, path: Path) -> None:
    """[aligned look |] aligned driving frame | output [| output + target points], at the driving fps."""
    t = run.targets
    render_side_by_side(run.generator, run.ws, path, driving=run.driving, start=run.cfg.start, quads=t.quads,
                        fps=t.fps, look=t.look, points=t.points, shown=run.shown, show_points=run.cfg.show_points,
                        stamp=run.untrained, device=run.device)


def write_animation_full(run: FinishedRun, path: Path) -> None:
    """animation.mp4 pasted back into the whole picture (look image or driving frames), at its size."""
    assert run.cfg.picture is not None
    fps = run.targets.fps
    render_full_video(run.generator, run.ws, path, fps, run.cfg.subframes,
                      picture(run.paste, run.cfg.picture, run.cfg.start), audio_from=Path(run.targets.audio),
                      audio_start=run.cfg.start / fps, stamp=run.untrained, device=run.device)


def write_side_by_side_full(run: FinishedRun, path: Path) -> None:
    """driving frame | output pasted back into the whole picture, at the driving fps."""
    assert run.cfg.picture is not None
    render_full_side_by_side(run.generator, run.ws, path, driving=run.driving, start=run.cfg.start,
                             fps=run.targets.fps, picture=picture(run.paste, run.cfg.picture, run.cfg.start),
                             stamp=run.untrained, device=run.device)


def write_latents(run: FinishedRun, path: Path) -> None:
    """The latents as rendered, the frozen noise and the loss terms (``stylepuppet render`` re-renders them)."""
    save_latents(path, run.ws, run.state, run.cfg, run.targets.fps, audio=run.targets.audio,
                 driving_digest=content_digest(run.driving), paste=run.paste)


def write_config(run: FinishedRun, path: Path) -> None:
    """The resolved settings (a ``--config`` file can hold the same keys)."""
    atomic.write_text(path, run.cfg.to_json() + "\n")


@torch.no_grad()
def write_look(folder: Path, look: LookFace, latent: LookLatent, generator: LatentGenerator,
               device: torch.device) -> None:
    """The look's projection: its latent, the framed look, the reconstruction beside it (generator pixels), and
    the figures with the quad that framed the look (``look_quad``, look-image pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    latent.save(folder / LOOK_LATENT)
    write_png(folder / LOOK_ALIGNED, look.image)
    drawn = to_uint8(generator.render(latent.latent[None].to(device), noise_mode="const"))[0]
    write_png(folder / LOOK_RECONSTRUCTION, np.concatenate([look.image, drawn], axis=1))
    figures = {**latent.figures, "look_quad": np.asarray(look.quad).tolist()}
    atomic.write_text(folder / LOOK_FIGURES, json.dumps(figures, indent=2) + "\n")


@dataclass(frozen=True)
class Output:
    """One file of a run folder: ``write`` makes it from a finished run (None: something else writes it)."""

    name: str
    write: Callable[[FinishedRun, Path], None] | None
    wanted: Callable[[AnimateConfig], bool] | None = None  # None: always written


def pasting(cfg: AnimateConfig) -> bool:
    return cfg.paste_back


OUTPUTS: tuple[Output, ...] = (
    Output(TRACK, None),  # stage 1 (not written when the user gives --track)
    Output(TARGETS, None),  # stage 2
    *(Output(name, None) for name in LOOK_FILES),  # stage 3
    Output(ANIMATION, write_animation),
    Output(SIDE_BY_SIDE, write_side_by_side),
    Output(ANIMATION_FULL, write_animation_full, wanted=pasting),
    Output(SIDE_BY_SIDE_FULL, write_side_by_side_full, wanted=pasting),
    Output(LATENTS, write_latents),
    Output(CONFIG, write_config),
    # `stylepuppet evaluate` (or `animate --evaluate`); each judges the run it was made from
    Output(EVALUATION, None),
    Output(REPORT_HTML, None),
    Output(REPORT_JSON, None),
)


def write_outputs(out: Path, run: FinishedRun) -> None:
    """Write every output of a finished run into ``out`` (removing those its settings do not ask for)."""
    for output in OUTPUTS:
        if output.write is None:
            continue
        if output.wanted is None or output.wanted(run.cfg):
            output.write(run, out / output.name)
        else:
            (out / output.name).unlink(missing_ok=True)
