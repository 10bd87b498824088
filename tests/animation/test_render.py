"""Rendering: sub-frames, the temporal latent filter, videos with the driving audio and the live noise."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from engine_stubs import TinyLatents

from stylepuppet.animation.render import (
    SIDE_PANEL,
    interpolate_latents,
    render_side_by_side,
    render_video,
    side_by_side_labels,
    smooth_latents,
)
from stylepuppet.images import to_uint8, upscale


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

# ------------------------------------------------------------------------------------------ side by side

QUADS = np.array([[[100, 100], [100, 400], [400, 400], [400, 100]]] * 2, dtype=np.float64)


def _side_by_side(media_dir: Path, path: Path, **kwargs) -> tuple[list[np.ndarray], np.ndarray]:
    """The decoded side_by_side.mp4 of 2 frames of a 32² generator, and its clean outputs enlarged to 256²."""
    gen = TinyLatents("w")
    ws = torch.randn(2, 1, gen.latent_dim, generator=torch.Generator().manual_seed(1))
    points = np.tile(np.array([[8.0, 8.0], [24.0, 20.0]]), (2, 1, 1))
    render_side_by_side(gen, ws, path, driving=media_dir / "d0.mp4", start=0, quads=QUADS, fps=25.0,
                        points=points, shown=np.array([0, 1]), **kwargs)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with torch.no_grad():
        outputs = to_uint8(gen.render(ws))
    return frames, np.stack([upscale(o, SIDE_PANEL) for o in outputs])


def _panel(frame: np.ndarray, index: int) -> np.ndarray:
    """Panel ``index`` of a side-by-side frame (below its caption strip)."""
    return frame[frame.shape[0] - SIDE_PANEL:, index * SIDE_PANEL:(index + 1) * SIDE_PANEL].astype(int)


def _green(panel: np.ndarray, x: float, y: float) -> bool:
    spot = panel[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].reshape(-1, 3).mean(axis=0)
    return spot[1] > 180 and spot[0] < 110 and spot[2] < 110


def test_side_by_side_panels_are_enlarged_and_the_output_is_clean(media_dir, tmp_path):
    frames, outputs = _side_by_side(media_dir, tmp_path / "free.mp4", look=None)
    assert len(frames) == 2 and frames[0].shape[1] == 2 * SIDE_PANEL and frames[0].shape[0] > SIDE_PANEL
    strip = frames[0][:frames[0].shape[0] - SIDE_PANEL]
    assert strip.mean() < 60 and strip.max() > 200  # dark, with light caption text
    for frame, output in zip(frames, outputs):
        # the output panel is the generator's frame, enlarged, with nothing drawn on it (H.264 noise only)
        assert np.abs(_panel(frame, 1) - output).mean() < 4
        assert not _green(_panel(frame, 1), (8 + 0.5) * 8 - 0.5, (8 + 0.5) * 8 - 0.5)
    assert side_by_side_labels(False, False) == ("driving frame (aligned)", "output")


def test_side_by_side_shows_the_target_points_in_a_panel_of_their_own(media_dir, tmp_path):
    look = np.full((32, 32, 3), 200, np.uint8)
    frames, outputs = _side_by_side(media_dir, tmp_path / "points.mp4", look=look, show_points=True)
    assert frames[0].shape[1] == 4 * SIDE_PANEL
    assert np.abs(_panel(frames[0], 0) - 200).mean() < 4  # the look, enlarged
    assert np.abs(_panel(frames[0], 2) - outputs[0]).mean() < 4  # the output, still clean
    marked = _panel(frames[0], 3)
    for x, y in ((8.0, 8.0), (24.0, 20.0)):  # 32² output pixels -> 256² panel pixels
        assert _green(marked, (x + 0.5) * 8 - 0.5, (y + 0.5) * 8 - 0.5)
    assert side_by_side_labels(True, True) == ("look (aligned)", "driving frame (aligned)", "output",
                                               "output + target points")
