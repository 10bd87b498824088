"""The figures of a run: does the output's mouth follow the driver's, beyond chance, and at what cost?

Everything here is measured by judges that are in no loss: dlib (:mod:`.judge`) for the 68 points,
the mouth opening, the jitter and one identity distance, and FaceNet (:mod:`.facenet`) for a second
identity distance, as dlib's face descriptor may sit in an identity loss. Never the landmark net of
the loss. Driving frames are judged as they are, outputs upscaled to 256².
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stylepuppet.errors import NoFaceError
from stylepuppet.evaluation.baseline import random_walks
from stylepuppet.evaluation.facenet import SAME_PERSON_DISTANCE as FACENET_SAME_PERSON
from stylepuppet.evaluation.facenet import FaceNet, embed_faces
from stylepuppet.evaluation.judge import DlibJudge, FrameMeasures
from stylepuppet.evaluation.measures import (
    SAME_PERSON_DISTANCE,
    descriptor_distances,
    landmark_jitter,
    mouth_ratio,
    pearson,
)
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.images import to_uint8

#: Shorter side outputs are upscaled to before they are judged.
JUDGE_SIZE = 256


def distance_summary(distance: np.ndarray | None, threshold: float) -> dict[str, float] | None:
    """Median, max and share past ``threshold`` of a distance series [T] over the frames with a face (NaN each
    when no frame has one; None without a series), as the report, the printed lines and the benchmarks give it."""
    if distance is None:
        return None
    found = distance[np.isfinite(distance)]
    if not found.size:
        return {"median": float("nan"), "max": float("nan"), "share_above_threshold": float("nan")}
    return {"median": float(np.median(found)), "max": float(np.max(found)),
            "share_above_threshold": float(np.mean(found > threshold))}


def _share_text(distance: np.ndarray, threshold: float) -> str:
    summary = distance_summary(distance, threshold)
    if np.isnan(summary["median"]):
        return "no frame to compare (no face found)"
    return (f"median {summary['median']:.3f}, max {summary['max']:.3f}, "
            f"{100 * summary['share_above_threshold']:.0f}% of frames above")


@dataclass(frozen=True)
class Identity:
    """One judge's identity distances [T] over the run's outputs: to the first output frame with a face
    (drift) and to the run's aligned look image (None when the run had no look); NaN where no face.

    ``driver_to_first``: the same judge's drift of the driving frames, each to the first with a face. A real
    person's own drift as they talk is the scale the output's drift is read against: on the first 80 frames
    of the seven clips in ``../shared/media`` dlib puts it at medians 0.18–0.35 (docs/keep-identity.md).
    """

    judge: str
    threshold: float  # below it the judge calls two faces the same person
    to_first: np.ndarray
    to_look: np.ndarray | None = None
    driver_to_first: np.ndarray | None = None

    def lines(self) -> list[str]:
        same = f"same person < {self.threshold}"
        found = [f"identity drift, {self.judge} (distance to the first frame; {same}): "
                 f"{_share_text(self.to_first, self.threshold)}"]
        if self.driver_to_first is not None:
            found.append(f"the driver's own identity drift, {self.judge} (a real person's, for scale): "
                         f"{_share_text(self.driver_to_first, self.threshold)}")
        if self.to_look is not None:
            found.append(f"identity to the look image, {self.judge} ({same}): "
                         f"{_share_text(self.to_look, self.threshold)}")
        return found


def drift(vectors: np.ndarray) -> np.ndarray:
    """Distance [T] of face vectors [T, D] (rows of NaN without a face) to the first with a face (all NaN: none)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    with_face = np.flatnonzero(np.isfinite(vectors).all(axis=1))
    return (descriptor_distances(vectors, reference=int(with_face[0])) if with_face.size
            else np.full(len(vectors), np.nan))


def identity(judge: str, threshold: float, vectors: np.ndarray, look: np.ndarray | None,
             driver: np.ndarray | None = None) -> Identity:
    """One judge's :class:`Identity` from the outputs' face vectors [T, D] (descriptors or embeddings, rows of
    NaN without a face), the look's vector [D] (all NaN when the look shows no face) and the driving frames'
    vectors [T, D]."""
    vectors = np.asarray(vectors, dtype=np.float64)
    to_look = None if look is None else np.linalg.norm(vectors - look, axis=-1)
    return Identity(judge, threshold, drift(vectors), to_look, None if driver is None else drift(driver))


@dataclass(frozen=True)
class Evaluation:
    """The figures of one run (frames where dlib found no face are NaN and left out of every figure)."""

    driver: FrameMeasures
    output: FrameMeasures
    correlation: float  # Pearson of driver vs output mouth-opening ratio
    walk_correlations: np.ndarray  # [walks] the same for random walks with the run's step sizes
    walk_missed: int  # walk frames without a detected face, over all walks
    identity: tuple[Identity, ...]  # dlib's, then FaceNet's when it is installed
    notes: tuple[str, ...] = ()  # what was not judged, and why
    video: Path | None = None  # the side-by-side video, once written

    @property
    def frames(self) -> int:
        return len(self.output.found)

    @property
    def identity_distance(self) -> np.ndarray:
        """dlib's descriptor distance [T] of each output frame to the first (the figure the proof test bounds)."""
        return self.identity[0].to_first

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
        return [
            f"frames: {self.frames} (dlib found no face in {self.driver.missed} driving and "
            f"{self.output.missed} output frames; left out)",
            f"mouth-opening correlation, driver vs output: {self.correlation:.3f}",
            f"random walks ({len(self.walk_correlations)}, same step sizes): median {self.walk_median:.3f}, "
            f"95th percentile {self.walk_p95:.3f} ({self.walk_missed} frames without a face)",
            *[line for judged in self.identity for line in judged.lines()],
            f"landmark jitter (inter-ocular distances): output {self.output_jitter:.4f}, "
            f"driver {self.driver_jitter:.4f}",
            *self.notes,
        ]


@torch.no_grad()
def render_frames(generator: LatentGenerator, latents: torch.Tensor, batch: int = 32) -> np.ndarray:
    """uint8 frames [T, R, R, 3] of latents [T, num_ws, dim] (noise as the generator holds it)."""
    chunks = [to_uint8(generator.render(latents[i:i + batch], noise_mode="const"))
              for i in range(0, len(latents), batch)]
    return np.concatenate(chunks)


def _counted(frames: Iterable[np.ndarray], bar: tqdm) -> Iterator[np.ndarray]:
    """``frames``, moving ``bar`` on as each one has been dealt with (when the next is asked for)."""
    for frame in frames:
        yield frame
        bar.update(1)


def evaluate_run(generator: LatentGenerator, latents: torch.Tensor, driver_frames: Sequence[np.ndarray], *,
                 walks: int = 10, seed: int = 0, judge: DlibJudge | None = None, look: np.ndarray | None = None,
                 facenet: FaceNet | None = None, progress: bool = False) -> tuple[Evaluation, np.ndarray]:
    """The figures of a run's latents [T, num_ws, dim] against its T driving frames, and the rendered outputs.

    Random walks start at the run's first latent and take its step sizes (see :mod:`.baseline`).
    ``look``: the run's aligned look image (uint8 [R, R, 3]), judged as the outputs are, for the identity
    distance to it. ``facenet``: the second identity judge (None: dlib's alone). ``progress``: a bar over
    every frame judged.
    """
    if len(driver_frames) != len(latents):
        raise ValueError(f"{len(latents)} latents but {len(driver_frames)} driving frames")
    judge = judge or DlibJudge(size=JUDGE_SIZE)
    count = len(latents)
    total = count * (2 + walks + 2 * (facenet is not None))
    with tqdm(total=total, unit="frame", desc="evaluate", disable=not progress) as bar:
        driver = judge.measure(_counted(driver_frames, bar), describe=True)
        if not driver.found.any():
            raise NoFaceError("dlib found no face in any driving frame; the run cannot be judged")
        outputs = render_frames(generator, latents)
        output = judge.measure(_counted(outputs, bar), describe=True, steady=True)
        driver_ratio = mouth_ratio(driver.points)
        correlation = pearson(driver_ratio, mouth_ratio(output.points))
        paths = random_walks(latents.float(), walks, generator.constrain, torch.Generator().manual_seed(seed))
        walk_corr, walk_missed = [], 0
        for path in paths:
            seen = judge.measure(_counted(render_frames(generator, path), bar), steady=True)
            walk_missed += seen.missed
            walk_corr.append(pearson(driver_ratio, mouth_ratio(seen.points)))
        look_seen = judge.measure([look], describe=True) if look is not None else None
        assert output.descriptors is not None and driver.descriptors is not None
        judged = [identity("dlib", SAME_PERSON_DISTANCE, output.descriptors,
                           None if look_seen is None else look_seen.descriptors[0], driver.descriptors)]
        if facenet is not None:
            embedded = embed_faces(facenet, [judge.prepare(o) for o in _counted(outputs, bar)], output.points)
            driver_embedded = embed_faces(facenet, [judge.prepare(d) for d in _counted(driver_frames, bar)],
                                          driver.points)
            look_embedded = (None if look_seen is None else
                             embed_faces(facenet, [judge.prepare(look)], look_seen.points)[0])
            judged.append(identity("FaceNet", FACENET_SAME_PERSON, embedded, look_embedded, driver_embedded))
    evaluation = Evaluation(driver, output, correlation, np.array(walk_corr), walk_missed, tuple(judged))
    return evaluation, outputs
