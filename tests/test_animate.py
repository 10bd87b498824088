import dataclasses
from pathlib import Path
from typing import ClassVar

import av
import numpy as np
import pytest
import torch
from engine_stubs import TinyLatents

from stylepuppet.animate import (
    RunState,
    fingerprint,
    interpolate_latents,
    render_video,
    save_npz_atomic,
    stamp_untrained,
)
from stylepuppet.config import preset


def decode(path: Path) -> tuple[int, float, bool, tuple[int, int]]:
    """(frames, fps, has audio, (width, height)) of a video file, decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, float(stream.average_rate), bool(container.streams.audio), (stream.width, stream.height)


# ------------------------------------------------------------------------------------------ sub-frames


def test_sub_frames_interpolate_consecutive_latents_and_hold_the_last():
    gen = TinyLatents("w")
    ws = torch.arange(3, dtype=torch.float32)[:, None, None].expand(3, 1, gen.latent_dim).clone()
    batches = list(interpolate_latents(ws, 2, gen))
    assert [b.shape for b in batches] == [(2, 1, gen.latent_dim)] * 3
    assert [b[:, 0, 0].tolist() for b in batches] == [[0, 0.5], [1, 1.5], [2, 2]]
    assert torch.equal(torch.cat(list(interpolate_latents(ws, 1, gen))), ws)


def test_sub_frames_stay_on_the_generators_support():
    class Sphere(TinyLatents):
        def constrain(self, latents):
            return latents / latents.norm(dim=-1, keepdim=True)

    gen = Sphere("w")
    ws = torch.nn.functional.normalize(torch.randn(2, 1, gen.latent_dim), dim=-1)
    for batch in interpolate_latents(ws, 3, gen):
        torch.testing.assert_close(batch.norm(dim=-1), torch.ones(3, 1))


@pytest.mark.parametrize("k", [1, 3])
def test_rendered_video_has_k_frames_per_latent_at_k_times_the_fps_with_the_driving_audio(tmp_path, media_dir, k):
    gen = TinyLatents("w+")
    ws = gen.mean_latent().expand(4, gen.num_ws, -1) + torch.randn(4, gen.num_ws, gen.latent_dim) * 0.1
    path = tmp_path / "a.mp4"
    count = render_video(gen, ws, path, 30.0, k, audio_from=media_dir / "d3.mp4", audio_start=1.0)
    frames, fps, audio, size = decode(path)
    assert count == frames == 4 * k
    assert fps == pytest.approx(30.0 * k)
    assert audio and size == (32, 32)


def test_render_uses_the_generators_live_noise(tmp_path):
    gen = TinyLatents("w")
    ws = gen.mean_latent()[None, None]
    with torch.no_grad():
        for buf in gen.noise_buffers().values():
            buf.mul_(30)  # loud noise so the decoded video must differ
    render_video(gen, ws, tmp_path / "loud.mp4", 25.0, 1)
    with torch.no_grad():
        for buf in gen.noise_buffers().values():
            buf.zero_()
    render_video(gen, ws, tmp_path / "quiet.mp4", 25.0, 1)
    assert (tmp_path / "loud.mp4").read_bytes() != (tmp_path / "quiet.mp4").read_bytes()


def test_untrained_stamp_changes_the_top_rows_only():
    frame = np.full((64, 64, 3), 90, np.uint8)
    stamped = stamp_untrained(frame)
    assert stamped.shape == frame.shape
    assert (stamped[:8] != frame[:8]).any() and (stamped[32:] == frame[32:]).all()


# ------------------------------------------------------------------------------------------ state


def test_state_round_trips_exactly(tmp_path):
    ws = [torch.randn(3, 5) for _ in range(4)]
    state = RunState("abc", ws, {"landmark": [0.1, 0.2, 0.3, 0.4]}, {"b4.noise": np.random.rand(4, 4).astype("f4")})
    state.save(tmp_path / "state.npz")
    again = RunState.load(tmp_path / "state.npz")
    assert again.fingerprint == "abc" and again.done == 4
    assert all(torch.equal(a, b) for a, b in zip(ws, again.ws))
    assert again.terms == state.terms and np.array_equal(again.noise["b4.noise"], state.noise["b4.noise"])


def test_atomic_save_leaves_no_partial_file(tmp_path):
    class Boom:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("disk full")

    save_npz_atomic(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(RuntimeError):
        save_npz_atomic(tmp_path / "x.npz", a=Boom())
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    assert np.load(tmp_path / "x.npz")["a"].shape == (3,)


def test_fingerprint_follows_settings_and_input_content_but_not_the_sub_frame_count(tmp_path):
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"one")
    cfg = preset("quick")
    base = fingerprint(cfg, {"driving": clip, "look": None})
    assert fingerprint(dataclasses.replace(cfg, subframes=3), {"driving": clip, "look": None}) == base
    assert fingerprint(dataclasses.replace(cfg, seed=1), {"driving": clip, "look": None}) != base
    clip.write_bytes(b"two")
    assert fingerprint(cfg, {"driving": clip, "look": None}) != base


# ------------------------------------------------------------------------------------------ the pipeline, in-process


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


def test_every_rendered_frame_uses_exactly_the_noise_at_the_end_of_frame_0(media_dir, tmp_path, monkeypatch):
    """Regression test for the original code's per-frame deepcopy of G, which threw the optimised noise away."""
    from stylepuppet.animate import animate, render_latents
    from stylepuppet.config import resolve_config
    from stylepuppet.models.stylegan2_latents import StyleGAN2Latents
    from stylepuppet.projector import Projector

    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("stylepuppet.video.VideoWriter", FrameSink)
    FrameSink.made = []
    first: dict[str, torch.Tensor] = {}
    initial: dict[str, torch.Tensor] = {}
    seen: list[dict[str, torch.Tensor]] = []
    project, render = Projector.project, StyleGAN2Latents.render

    def spy_project(self, index, *args, **kwargs):
        if index == 0:
            initial.update({k: v.clone() for k, v in self.G.noise_buffers().items()})
        result = project(self, index, *args, **kwargs)
        if index == 0:
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
    assert first and any(not torch.equal(first[k], initial[k]) for k in first)  # frame 0 did change the noise
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
