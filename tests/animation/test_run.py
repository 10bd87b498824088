import dataclasses
from pathlib import Path
from typing import ClassVar

import av
import numpy as np
import pytest
import torch
from engine_stubs import TinyLatents

from stylepuppet.animation.run import (
    RunState,
    fingerprint,
    interpolate_latents,
    render_video,
    smooth_latents,
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


def test_latent_filter_is_a_normalised_gaussian_over_time_that_keeps_a_steady_drift():
    gen = TinyLatents("w")
    ws = torch.randn(24, 1, gen.latent_dim, generator=torch.Generator().manual_seed(0))
    sigma = 1.3
    radius = int(4 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    interior = range(radius, len(ws) - radius)
    expected = np.stack([np.tensordot(taps, ws.numpy()[t - radius:t + radius + 1], axes=1) for t in interior])
    np.testing.assert_allclose(smooth_latents(ws, sigma, gen)[radius:-radius].numpy(), expected, atol=1e-6)
    assert torch.equal(smooth_latents(ws, 0.0, gen), ws)
    drift = ws[:1] + torch.arange(24, dtype=torch.float32)[:, None, None] * ws[1:2]
    torch.testing.assert_close(smooth_latents(drift, 2.0, gen), drift, atol=1e-5, rtol=1e-5)


def test_latent_filter_takes_out_wobble_and_keeps_latents_on_the_sphere():
    class Sphere(TinyLatents):
        def constrain(self, latents):
            return latents / latents.norm(dim=-1, keepdim=True)

    gen = Sphere("w")
    rng = torch.Generator().manual_seed(1)
    path = torch.nn.functional.normalize(torch.randn(1, 1, gen.latent_dim, generator=rng), dim=-1).expand(40, -1, -1)
    ws = gen.constrain(path + 0.05 * torch.randn(40, 1, gen.latent_dim, generator=rng))
    out = smooth_latents(ws, 1.0, gen)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(40, 1))
    wobble = lambda x: (x[1:] - x[:-1]).norm(dim=-1).mean()  # noqa: E731
    assert wobble(out) < 0.5 * wobble(ws)


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


def test_fingerprint_follows_settings_and_input_content_but_not_the_rendering(tmp_path):
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"one")
    cfg = preset("quick")
    base = fingerprint(cfg, {"driving": clip, "look": None})
    assert fingerprint(dataclasses.replace(cfg, subframes=3), {"driving": clip, "look": None}) == base
    assert fingerprint(dataclasses.replace(cfg, latent_smooth=1.0), {"driving": clip, "look": None}) == base
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
    from stylepuppet.animation.run import animate, render_latents
    from stylepuppet.config import resolve_config
    from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
    from stylepuppet.optim.projector import Projector

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


# ------------------------------------------------------------------------------------------ targets


class _CentreNet(torch.nn.Module):
    """Puts every point at the centre of its crop and records the crops it saw."""

    input_size = 16
    num_points = 3
    groups: ClassVar[dict[str, np.ndarray]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, crops: torch.Tensor):
        from stylepuppet.landmarks.net import LandmarkOutput

        self.seen.append(crops)
        centre = (self.input_size - 1) / 2
        return LandmarkOutput(torch.full((crops.shape[0], self.num_points, 2), centre))


def test_driver_landmarks_are_read_sharp_and_returned_in_generator_pixels(media_dir, monkeypatch):
    from stylepuppet.animation import run as module
    from stylepuppet.optim.objective import LandmarkObjective

    sizes: list[int] = []
    real = module.aligned_frames

    def spy(driving, start, quads, size):
        sizes.append(size)
        return real(driving, start, quads, size)

    monkeypatch.setattr(module, "aligned_frames", spy)
    obj = LandmarkObjective.__new__(LandmarkObjective)
    obj.net, obj.size = _CentreNet(), 16
    quads = np.array([[[100, 100], [100, 400], [400, 400], [400, 100]]] * 2, dtype=np.float64)
    centres = np.array([[30.0, 33.0], [31.0, 34.0]], dtype=np.float32)
    sides = np.array([40.0, 42.0], dtype=np.float32)
    points = module.driver_points(obj, media_dir / "d0.mp4", 0, quads, centres, sides, 64, torch.device("cpu"))
    assert sizes == [module.READ_SIZE]  # a 64² generator's targets are read at 256², not 64²
    from stylepuppet.landmarks.framing import jitter_framing

    k = module.READ_SIZE / 64
    for t in range(2):  # each frame: the mean over its seeded jittered framings, back in generator pixels
        c, _ = jitter_framing(torch.as_tensor((centres[t:t + 1] + 0.5) * k - 0.5), torch.as_tensor(sides[t:t + 1] * k),
                              torch.Generator().manual_seed(t), module.READ_SHIFT, module.READ_SCALE,
                              module.READ_FRAMINGS)
        expected = (c.mean(dim=0).numpy() + 0.5) / k - 0.5
        np.testing.assert_allclose(points[t], np.repeat(expected[None], 3, axis=0), atol=1e-4)
        assert np.abs(expected - centres[t]).max() > 1e-3  # the framings really were jittered
    assert len(obj.net.seen) == 2 and obj.net.seen[0].shape[0] == module.READ_FRAMINGS


def test_free_mode_starts_from_the_best_candidate_saved_with_the_targets(media_dir, models_dir, tmp_path):
    from stylepuppet.animation.run import Targets, animate
    from stylepuppet.config import resolve_config

    cfg = resolve_config("free", None, {
        "network": str(models_dir / "digiface_dcgan64_G.pt"), "space": "w", "landmarks.net": "mesh",
        "landmarks.weights": str(models_dir / "face_landmark.tflite"), "start_candidates": 8, "max_frames": 2,
        "subframes": 1, "schedule.steps_first": 1, "schedule.steps": 1, "schedule.lr": 1e-6})
    out = tmp_path / "run"
    animate(cfg, media_dir / "d0.mp4", out, progress=False)
    targets = Targets.load(out / "targets.npz")
    from stylepuppet.generators.dcgan import load_dcgan

    candidates = load_dcgan(models_dir / "digiface_dcgan64_G.pt").candidate_latents(8, torch.Generator().manual_seed(0))
    assert targets.start is not None and any(np.array_equal(targets.start, c.numpy()) for c in candidates)
    with np.load(out / "latents.npz") as z:
        np.testing.assert_allclose(z["ws"][0], targets.start, atol=1e-4)  # one tiny step away from the start


# ------------------------------------------------------------------------------------------ state cost


def _grow(path: Path, frames: int, monkeypatch) -> list[int]:
    """Save a state after each of ``frames`` frames (as the animate loop does); bytes written per save."""
    from stylepuppet import atomic

    written: list[int] = []
    real = atomic.save_npz

    def spy(target, **arrays):
        written[-1] += sum(np.asarray(a).nbytes for a in arrays.values())
        real(target, **arrays)

    monkeypatch.setattr(atomic, "save_npz", spy)
    state = RunState("abc", [], {}, {})
    g = torch.Generator().manual_seed(0)
    for i in range(frames):
        state.ws.append(torch.randn(4, 8, generator=g))
        state.terms.setdefault("landmark", []).append(float(i))
        if i == 0:
            state.noise = {"b8.noise": np.random.rand(8, 8).astype("f4")}
        written.append(0)
        state.save(path)
    return written


def test_saving_after_each_frame_costs_the_same_however_long_the_run(tmp_path, monkeypatch):
    from stylepuppet.animation.run import CHUNK

    written = _grow(tmp_path / "state.npz", 5 * CHUNK, monkeypatch)
    per_frame = 4 * 8 * 4 + 8  # one latent and one loss value
    assert max(written[1:]) <= CHUNK * per_frame + 200  # at most one chunk (and its fingerprint) per save
    assert written[CHUNK - 1] == written[3 * CHUNK - 1] == written[5 * CHUNK - 1]  # full chunks cost alike
    assert written[0] > written[1]  # the noise is written with frame 0, not again
    again = RunState.load(tmp_path / "state.npz")
    assert again.done == 5 * CHUNK and again.terms["landmark"] == [float(i) for i in range(5 * CHUNK)]


def test_state_in_several_chunks_round_trips_and_a_short_chunk_ends_it(tmp_path, monkeypatch):
    from stylepuppet.animation.run import CHUNK, chunk_folder

    path = tmp_path / "state.npz"
    _grow(path, 2 * CHUNK + 3, monkeypatch)
    state = RunState.load(path)
    assert state.done == 2 * CHUNK + 3 and state.noise["b8.noise"].shape == (8, 8)
    state.ws.append(torch.ones(4, 8))
    state.terms["landmark"].append(-1.0)
    state.save(path)  # appends to the loaded run without rewriting earlier chunks
    assert RunState.load(path).done == 2 * CHUNK + 4
    (chunk_folder(path) / "000001.npz").unlink()  # a hole: frames after it cannot be trusted
    assert RunState.load(path).done == CHUNK
    RunState.remove(path)
    assert not path.exists() and not chunk_folder(path).exists()


def test_an_interrupted_run_with_prediction_and_early_stop_resumes_to_the_same_latents(media_dir, tmp_path,
                                                                                      monkeypatch):
    from stylepuppet.animation.run import animate
    from stylepuppet.config import resolve_config
    from stylepuppet.optim.projector import Projector

    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("stylepuppet.video.VideoWriter", FrameSink)
    cfg = resolve_config("keep-identity", None, {
        "untrained": True, "look_loss": "msssim", "max_frames": 5, "subframes": 1, "schedule.steps_first": 4,
        "schedule.steps": 6, "schedule.predict": True, "schedule.lr": 0.01,
        "schedule.early_stop_tol": 0.5, "schedule.early_stop_min": 2, "schedule.early_stop_every": 1})
    inits: list[torch.Tensor | None] = []
    cut = {"at": -1}
    project = Projector.project

    class Killed(Exception):
        pass

    def spy(self, index, targets, prev=None, *, init=None, **kwargs):
        inits.append(init)
        if index == cut["at"]:
            raise Killed
        return project(self, index, targets, prev, init=init, **kwargs)

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
