"""Judge an animation: does the output's mouth follow the driver's, beyond chance, and at what cost?

Everything here is measured with dlib (see :mod:`stylepuppet.evaluation.judge`), never with the
landmark net of the loss, on the driving frames as they are and on the outputs upscaled to 256².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from stylepuppet.animation.outputs import EVALUATION, LATENTS
from stylepuppet.animation.render import load_latents, saved_generator
from stylepuppet.errors import MediaError, NoFaceError
from stylepuppet.evaluation.baseline import random_walks
from stylepuppet.evaluation.judge import DlibJudge, FrameMeasures
from stylepuppet.evaluation.measures import (
    SAME_PERSON_DISTANCE,
    descriptor_distances,
    landmark_jitter,
    mouth_ratio,
    pearson,
)
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.images import draw_points, to_uint8
from stylepuppet.video import VideoWriter, content_digest, open_frames

#: Side of each panel of the side-by-side video (the size outputs are judged at).
PANEL = 256
#: Fewest frames a run must have to be judged: the correlation needs three, and so does the jitter.
MIN_FRAMES = 3


@dataclass
class Evaluation:
    """The figures of one run (frames where dlib found no face are NaN and left out of every figure)."""

    driver: FrameMeasures
    output: FrameMeasures
    correlation: float  # Pearson of driver vs output mouth-opening ratio
    walk_correlations: np.ndarray  # [walks] the same for random walks with the run's step sizes
    walk_missed: int  # walk frames without a detected face, over all walks
    identity_distance: np.ndarray  # [T] dlib descriptor distance of each output frame to the first found
    video: Path | None = None  # the side-by-side video, once written

    @property
    def frames(self) -> int:
        return len(self.output.found)

    @property
    def driver_ratio(self) -> np.ndarray:
        return mouth_ratio(self.driver.points)

    @property
    def output_ratio(self) -> np.ndarray:
        return mouth_ratio(self.output.points)

    @property
    def walk_median(self) -> float:
        walks = self.walk_correlations[np.isfinite(self.walk_correlations)]
        return float(np.median(walks)) if walks.size else float("nan")

    @property
    def walk_p95(self) -> float:
        walks = self.walk_correlations[np.isfinite(self.walk_correlations)]
        return float(np.percentile(walks, 95)) if walks.size else float("nan")

    @property
    def output_jitter(self) -> float:
        return landmark_jitter(self.output.points)

    @property
    def driver_jitter(self) -> float:
        return landmark_jitter(self.driver.points)

    def lines(self) -> list[str]:
        """The figures as printable lines."""
        dist = self.identity_distance[np.isfinite(self.identity_distance)]
        walks = len(self.walk_correlations)
        drift = (f"median {np.median(dist):.3f}, max {np.max(dist):.3f}, "
                 f"{100 * np.mean(dist > SAME_PERSON_DISTANCE):.0f}% of frames above" if dist.size
                 else "no output frame shows a face")
        return [
            f"frames: {self.frames} (dlib found no face in {self.driver.missed} driving and "
            f"{self.output.missed} output frames; left out)",
            f"mouth-opening correlation, driver vs output: {self.correlation:.3f}",
            f"random walks ({walks}, same step sizes): median {self.walk_median:.3f}, "
            f"95th percentile {self.walk_p95:.3f} ({self.walk_missed} frames without a face)",
            f"identity drift (dlib descriptor distance to the first frame; same person < {SAME_PERSON_DISTANCE}): "
            f"{drift}",
            f"landmark jitter (inter-ocular distances): output {self.output_jitter:.4f}, "
            f"driver {self.driver_jitter:.4f}",
        ]


@torch.no_grad()
def render_frames(generator: LatentGenerator, latents: torch.Tensor, batch: int = 32) -> np.ndarray:
    """uint8 frames [T, R, R, 3] of latents [T, num_ws, dim] (noise as the generator holds it)."""
    chunks = [to_uint8(generator.render(latents[i:i + batch], noise_mode="const"))
              for i in range(0, len(latents), batch)]
    return np.concatenate(chunks)


def evaluate_run(generator: LatentGenerator, latents: torch.Tensor, driver_frames: Sequence[np.ndarray], *,
                 walks: int = 10, seed: int = 0, judge: DlibJudge | None = None) -> tuple[Evaluation, np.ndarray]:
    """The figures of a run's latents [T, num_ws, dim] against its T driving frames, and the rendered outputs.

    Random walks start at the run's first latent and take its step sizes (see :mod:`.baseline`).
    """
    if len(driver_frames) != len(latents):
        raise ValueError(f"{len(latents)} latents but {len(driver_frames)} driving frames")
    judge = judge or DlibJudge(size=PANEL)
    driver = judge.measure(driver_frames)
    if not driver.found.any():
        raise NoFaceError("dlib found no face in any driving frame; the run cannot be judged")
    outputs = render_frames(generator, latents)
    output = judge.measure(outputs, describe=True)
    driver_ratio = mouth_ratio(driver.points)
    correlation = pearson(driver_ratio, mouth_ratio(output.points))
    paths = random_walks(latents.float(), walks, generator.constrain, torch.Generator().manual_seed(seed))
    walk_corr, walk_missed = [], 0
    for path in paths:
        seen = judge.measure(render_frames(generator, path))
        walk_missed += seen.missed
        walk_corr.append(pearson(driver_ratio, mouth_ratio(seen.points)))
    distance = np.full(len(outputs), np.nan)
    if output.found.any():
        assert output.descriptors is not None
        distance = descriptor_distances(output.descriptors, reference=int(np.argmax(output.found)))
    return Evaluation(driver, output, correlation, np.array(walk_corr), walk_missed, distance), outputs


def _face_window(points: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float]:
    """A fixed square (x0, y0, side) around the driver's face over the whole clip, for viewing."""
    found = points[np.isfinite(points).all(axis=(1, 2))]
    if not len(found):
        h, w = shape
        side = float(min(h, w))
        return (w - side) / 2, (h - side) / 2, side
    lo = np.median(found.min(axis=1), axis=0)
    hi = np.median(found.max(axis=1), axis=0)
    centre = (lo + hi) / 2
    side = 1.6 * float(np.max(hi - lo))
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def _panel(frame: np.ndarray, points: np.ndarray, window: tuple[float, float, float],
           judged_scale: float) -> np.ndarray:
    """``frame`` cut to ``window`` at PANEL², with ``points`` (in pixels of the frame scaled by ``judged_scale``)."""
    x0, y0, side = window
    # EXTENT (not resize's box) so a window reaching past the frame's edge is filled with black
    img = Image.fromarray(frame).transform((PANEL, PANEL), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side),
                                           Image.Resampling.BICUBIC)
    if np.isfinite(points).all():
        # pixel-centre convention: judged pixel p is frame pixel (p + 0.5) / judged_scale - 0.5
        frame_pts = (points + 0.5) / judged_scale - 0.5
        return draw_points(np.asarray(img), (frame_pts - np.array([x0, y0]) + 0.5) * (PANEL / side) - 0.5)
    ImageDraw.Draw(img).text((4, 4), "no face found", fill=(255, 0, 0))
    return np.asarray(img)


def write_side_by_side(path: str | Path, driver_frames: Sequence[np.ndarray], outputs: np.ndarray,
                       evaluation: Evaluation, fps: float, judge_size: int = PANEL) -> Path:
    """driver (face window) | output, each PANEL², with dlib's points as judged; returns the path."""
    window = _face_window(evaluation.driver.points, driver_frames[0].shape[:2])
    out_side = outputs.shape[1]
    out_scale = max(1.0, judge_size / out_side)
    driver_scale = max(1.0, judge_size / min(driver_frames[0].shape[:2]))
    with VideoWriter(path, fps) as writer:
        for t, frame in enumerate(driver_frames):
            left = _panel(frame, evaluation.driver.points[t], window, driver_scale)
            right = _panel(outputs[t], evaluation.output.points[t], (0.0, 0.0, float(out_side)), out_scale)
            writer.write(np.concatenate([left, right], axis=1))
    return Path(path)


def evaluate_output(out: str | Path, driving: str | Path, *, network: str | None = None, walks: int = 10,
                    seed: int = 0, video: str | Path | None = None) -> Evaluation:
    """Judge an ``stylepuppet animate`` output folder (its latents.npz) against the driving clip.

    The generator is the one recorded in the latents (or ``network``), with the run's frozen noise;
    the driving frames are the run's (from its ``start``, one per latent). Writes the side-by-side
    video (default OUT/evaluation.mp4, its path in :attr:`Evaluation.video`) and returns the figures.
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
    evaluation, outputs = evaluate_run(generator, saved.ws, frames, walks=walks, seed=seed)
    path = write_side_by_side(Path(video) if video is not None else out / EVALUATION, frames, outputs,
                              evaluation, saved.fps)
    return replace(evaluation, video=path)
