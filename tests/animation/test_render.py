"""Rendering: sub-frames, the temporal latent filter, videos with the driving audio and the live noise."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from engine_stubs import TinyLatents

from stylepuppet.animation.render import interpolate_latents, render_video, smooth_latents


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
