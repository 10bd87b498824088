"""Proof on real faces: a pretrained DCGAN face follows the mouth of real driving clips, beyond chance.

Free mode (the ``free`` preset), MediaPipe mesh loss, the whole of d0 (78 frames) and the first 80
frames of d3, run through ``stylepuppet animate`` and judged with dlib, which is in no loss: its 68
points on the outputs (upscaled to 256²) give the mouth-opening ratio, compared with the driver's by
Pearson correlation, and against random latent walks with the run's step sizes. The figures and the
side-by-side video's path are printed at the end of the run ("figures measured").

Asserted: 0.8 on d0 and 0.7 on d3 (issue 13's target), each also 0.2 / 0.25 above the random walks' 95th
percentile (d0's walks correlate strongly by chance: its 78 frames hold one long opening), at seed 0,
the default a user gets (the README's first command runs d3 so). With the ``free`` preset as of session 11
(one pool of start faces whatever the seed, each rehearsed with the run's identity term), seed 0 gave d0 0.963
and d3 0.727 against walks' 95th percentiles of 0.62 and 0.09, no frame without a face, identity drift
medians 0.36 and 0.18 (2026-12-04, docs/motion.md). Runs are deterministic for a given machine and thread
count, but the start faces' close scores make them move between machines: the code before the rehearsal's
fix gave d3 0.826 on an earlier machine and 0.79 on this one. ``benchmarks/bench_proof.py``
measures the whole table of seven clips and three seeds.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import stylepuppet
from stylepuppet.cli import run
from stylepuppet.evaluation.measures import SAME_PERSON_DISTANCE

pytestmark = pytest.mark.slow(minutes=13)  # each run, at one torch thread

#: (clip, frames, seed, least correlation asserted, least margin over the walks' 95th percentile)
CLIPS = [("d0", 78, 0, 0.8, 0.2), ("d3", 80, 0, 0.7, 0.25)]


@pytest.mark.parametrize("clip, frames, seed, least, margin", CLIPS)
def test_the_output_mouth_follows_the_driver(clip: str, frames: int, seed: int, least: float, margin: float,
                                             media_dir: Path, models_dir: Path, tmp_path: Path, capsys,
                                             record_property) -> None:
    out = tmp_path / clip
    driving = media_dir / f"{clip}.mp4"
    code = run(["animate", "--mode", "free", "--driving", str(driving),
                "--network", str(models_dir / "digiface_dcgan64_G.pt"),
                "--landmark-net", "mesh", "--landmark-weights", str(models_dir / "face_landmark.tflite"),
                "--subframes", "1", "--max-frames", str(frames), "--seed", str(seed), "--quiet", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    evaluation = stylepuppet.evaluate(out, driving, walks=10)
    lines = [*evaluation.lines(), f"side-by-side video: {evaluation.video}"]
    record_property("figures", f"{clip} (seed {seed}): " + "\n    ".join(lines))
    assert evaluation.correlation >= least
    assert evaluation.correlation > evaluation.walk_p95 + margin  # beyond chance
    assert evaluation.output.missed <= frames // 10  # the judge sees a face in (nearly) every output frame
    assert np.nanmedian(evaluation.identity_distance) < SAME_PERSON_DISTANCE
    with av.open(str(evaluation.video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames
