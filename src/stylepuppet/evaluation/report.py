"""Judge a run folder: its figures (:mod:`.figures`), evaluation.mp4 (:mod:`.panels`) and the report
(:mod:`.document`), from the folder's latents.npz and targets.npz and the driving clip."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from stylepuppet.animation.outputs import EVALUATION, LATENTS
from stylepuppet.animation.render import load_latents, saved_generator
from stylepuppet.animation.state import TARGETS
from stylepuppet.animation.targets import Targets
from stylepuppet.errors import MediaError, WeightsError
from stylepuppet.evaluation.document import write_report
from stylepuppet.evaluation.facenet import FaceNet, load_facenet
from stylepuppet.evaluation.figures import Evaluation, evaluate_run
from stylepuppet.evaluation.panels import write_side_by_side
from stylepuppet.video import content_digest, open_frames

#: Fewest frames a run must have to be judged: the correlation needs three, and so does the jitter.
MIN_FRAMES = 3


def second_judge() -> tuple[FaceNet | None, tuple[str, ...]]:
    """FaceNet when its weights are installed; otherwise None and the one line that says so."""
    try:
        return load_facenet(), ()
    except WeightsError as exc:
        return None, (f"FaceNet judge skipped, identity judged by dlib alone: {exc}",)


def evaluate_output(out: str | Path, driving: str | Path, *, network: str | None = None, walks: int = 10,
                    seed: int = 0, video: str | Path | None = None, progress: bool = False) -> Evaluation:
    """Judge an ``stylepuppet animate`` output folder (its latents.npz) against the driving clip.

    The generator is the one recorded in the latents (or ``network``), with the run's frozen noise;
    the driving frames are the run's (from its ``start``, one per latent); the look, when the run had
    one, is the aligned look of its targets.npz. Writes the side-by-side video (default
    OUT/evaluation.mp4, its path in :attr:`Evaluation.video`) and the report (OUT/report.html,
    OUT/report.json); returns the figures.
    """
    out = Path(out)
    saved = load_latents(out / LATENTS)
    if saved.driving_digest is not None and content_digest(driving) != saved.driving_digest:
        made_from = saved.audio or "its name was not recorded"
        raise MediaError(f"{driving} is not the driving clip the run in {out} was made from ({made_from}); "
                         "give that clip")
    count = len(saved.ws)
    if count < MIN_FRAMES:
        raise MediaError(f"the run in {out} has {count} frame(s); judging it takes at least {MIN_FRAMES} (a "
                         "correlation or a jitter of fewer is undefined)")
    cfg = saved.config if network is None else replace(saved.config, network=network)
    generator, _ = saved_generator(saved, cfg)
    with open_frames(driving, start=cfg.start, max_frames=count) as source:
        frames = list(source)
    if len(frames) != count:
        raise MediaError(f"{driving} has {len(frames)} frames from frame {cfg.start}, but the run has {count}; "
                         "give the driving clip the run was made from")
    look = Targets.load(out / TARGETS).look if (out / TARGETS).is_file() else None
    facenet, notes = second_judge()
    evaluation, outputs = evaluate_run(generator, saved.ws, frames, walks=walks, seed=seed, look=look,
                                       facenet=facenet, progress=progress)
    evaluation = replace(evaluation, notes=evaluation.notes + notes)
    path = write_side_by_side(Path(video) if video is not None else out / EVALUATION, frames, outputs,
                              evaluation, saved.fps)
    write_report(out, evaluation, frames, outputs, saved.terms, cfg, driving=Path(driving), fps=saved.fps)
    return replace(evaluation, video=path)
