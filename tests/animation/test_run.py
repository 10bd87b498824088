"""The pipeline in-process: every render uses the noise frozen after frame 0; an interrupted run resumes exactly."""

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from stylepuppet.animation.render import render_latents
from stylepuppet.animation.run import animate
from stylepuppet.config import resolve_config
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.optim.projector import Projector


class FrameSink:
    """Stands in for VideoWriter: keeps the exact frames (H.264 would blur the comparison)."""

    made: ClassVar[list["FrameSink"]] = []

    def __init__(self, path, fps, audio_from=None, **kwargs):
        self.path, self.fps, self.audio_from, self.frames = Path(path), float(fps), audio_from, []
        FrameSink.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def write(self, frame):
        self.frames.append(np.array(frame))

def test_every_rendered_frame_uses_exactly_the_noise_at_the_end_of_the_look_projection(media_dir, tmp_path,
                                                                                     monkeypatch):
    """Regression test for the original code's per-frame deepcopy of G, which threw the optimised noise away.
    In keep-identity mode the look's projection optimises the noise, and no frame does."""
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("stylepuppet.animation.render.VideoWriter", FrameSink)
    FrameSink.made = []
    first: dict[str, torch.Tensor] = {}
    initial: dict[str, torch.Tensor] = {}
    seen: list[dict[str, torch.Tensor]] = []
    project, render = Projector.project, StyleGAN2Latents.render

    calls: list[bool | None] = []

    def spy_project(self, index, *args, **kwargs):
        calls.append(kwargs.get("first"))
        if len(calls) == 1:
            initial.update({k: v.clone() for k, v in self.G.noise_buffers().items()})
        result = project(self, index, *args, **kwargs)
        if len(calls) == 1:
            first.update({k: v.clone() for k, v in self.G.noise_buffers().items()})
        return result

    def spy_render(self, latents, noise_mode="const"):
        if torch.is_inference_mode_enabled():  # the output renders (optimisation runs with autograd)
            seen.append({k: v.clone() for k, v in self.noise_buffers().items()})
        return render(self, latents, noise_mode)

    monkeypatch.setattr(Projector, "project", spy_project)
    monkeypatch.setattr(StyleGAN2Latents, "render", spy_render)
    cfg = resolve_config("keep-identity", None, {"untrained": True, "look_loss": "msssim", "max_frames": 3,
                                                  "schedule.steps_first": 5, "schedule.steps": 2})
    with pytest.warns(UserWarning, match="UNTRAINED"):
        animate(cfg, media_dir / "d0.mp4", tmp_path / "out", look=media_dir / "s3.jpg", progress=False)
    assert calls == [True, False, False, False]  # the look's projection, then three frames that leave the noise
    assert first and any(not torch.equal(first[k], initial[k]) for k in first)  # the projection changed the noise
    assert len(seen) == 3 + 3  # animation (3 batches of k=2) + side by side (3 frames)
    assert all(torch.equal(s[k], first[k]) for s in seen for k in first)
    animation, side = FrameSink.made
    assert len(animation.frames) == 6 and animation.fps == 50 and side.fps == 25
    assert animation.audio_from == media_dir / "d0.mp4"

    with pytest.warns(UserWarning, match="UNTRAINED"):
        render_latents(tmp_path / "out" / "latents.npz", tmp_path / "again.mp4")
    again = FrameSink.made[-1]
    assert all(np.array_equal(a, b) for a, b in zip(again.frames, animation.frames))
    assert all(torch.equal(seen[-1][k], first[k]) for k in first)

def test_an_interrupted_run_with_prediction_early_stop_and_carried_moments_resumes_to_the_same_latents(
        media_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("stylepuppet.animation.render.VideoWriter", FrameSink)
    cfg = resolve_config("keep-identity", None, {
        "untrained": True, "look_loss": "msssim", "max_frames": 5, "subframes": 1, "latent_smooth": 0,
        "schedule.steps_first": 4, "schedule.steps": 6, "schedule.predict": True, "schedule.lr": 0.01,
        "schedule.early_stop_tol": 0.5, "schedule.early_stop_min": 2, "schedule.early_stop_every": 1,
        "schedule.carry_moments": True})
    inits: list[torch.Tensor | None] = []
    cut = {"at": -1}
    project = Projector.project

    class Killed(Exception):
        pass

    def spy(self, index, targets, prev=None, *, init=None, first=None, **kwargs):
        if first:  # the look's projection
            return project(self, index, targets, prev, init=init, first=first, **kwargs)
        inits.append(init)
        if index == cut["at"]:
            raise Killed
        return project(self, index, targets, prev, init=init, first=first, **kwargs)

    monkeypatch.setattr(Projector, "project", spy)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        animate(cfg, media_dir / "d0.mp4", tmp_path / "whole", look=media_dir / "s3.jpg", progress=False)
    with np.load(tmp_path / "whole" / "latents.npz") as z:
        whole = z["ws"]
    assert inits[0] is None and inits[1] is None  # no prediction before two frames are done
    for i in (2, 3, 4):
        assert torch.equal(inits[i], torch.from_numpy(whole[i - 1] + (whole[i - 1] - whole[i - 2])))
    cut["at"] = 3
    with pytest.warns(UserWarning, match="UNTRAINED"), pytest.raises(Killed):
        animate(cfg, media_dir / "d0.mp4", tmp_path / "cut", look=media_dir / "s3.jpg", progress=False)
    cut["at"] = -1
    with pytest.warns(UserWarning, match="UNTRAINED"):
        resumed = animate(cfg, media_dir / "d0.mp4", tmp_path / "cut", look=media_dir / "s3.jpg", progress=False)
    assert resumed.resumed_from == 3
    with np.load(tmp_path / "cut" / "latents.npz") as z:
        assert np.array_equal(z["ws"], whole)


def test_a_run_times_its_stages_and_counts_its_steps(media_dir, tmp_path, monkeypatch):
    """The start face's choice is a fixed cost a benchmark reports apart from the frames: it is timed inside the
    preparation, and the frames' steps are counted as they ran."""
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("stylepuppet.animation.render.VideoWriter", FrameSink)
    cfg = resolve_config("free", None, {"untrained": True, "max_frames": 3, "subframes": 1, "start_candidates": 8,
                                        "start_rehearsal": 2, "schedule.steps_first": 2, "schedule.steps": 3})
    with pytest.warns(UserWarning, match="UNTRAINED"):
        result = animate(cfg, media_dir / "d0.mp4", tmp_path / "run", progress=False)
    assert result.steps == 2 + 2 * 3
    for seconds in (result.stages.wall, result.stages.cpu):
        assert set(seconds) == {"prepare", "start_scoring", "start_rehearsal", "frames", "outputs"}
        assert all(v > 0 for v in seconds.values())
        assert seconds["start_scoring"] + seconds["start_rehearsal"] <= seconds["prepare"]
    assert sum(result.stages.wall[k] for k in ("prepare", "frames", "outputs")) <= result.seconds
