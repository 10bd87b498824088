"""End to end: every command that takes a generator takes a StyleGAN3 pickle (NVIDIA's format, written by the
tests' own writer) through the one loader, as it takes a StyleGAN2 one."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from generators import nvidia_pickle as nvp
from PIL import Image
from weights_server import serve

import stylepuppet
from stylepuppet import weights
from stylepuppet.animation.look import LookLatent
from stylepuppet.cli import run
from stylepuppet.generators import stylegan3
from stylepuppet.weights import WeightsEntry

FAST = ["--untrained", "--untrained-size", "tiny", "--look-loss", "msssim", "--steps-first", "6", "--steps", "3",
        "--subframes", "1", "--quiet"]


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def nvidia_generate(G: torch.nn.Module, seed: int, psi: float) -> np.ndarray:
    """NVIDIA's generate.py for one seed, written out."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, torch.zeros(1, G.c_dim), truncation_psi=psi, noise_mode="const")
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private weights cache, so nothing is read from or written to the user's."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLEPUPPET_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def animation_pickle(tmp_path_factory) -> Path:
    """A 64² config-R network (radial filters, 1x1 convolutions) with 4 layers: big enough for the face crops."""
    path = tmp_path_factory.mktemp("sg3") / "stylegan3-r-tiny.pkl"
    return nvp.write(path, nvp.sg3_snapshot(nvp.SG3Config(resolution=64, config="r", num_layers=4)))


@pytest.mark.parametrize("config", ["t", "r"])
def test_generate_writes_nvidias_images_for_a_stylegan3_pickle(tmp_path, capsys, config):
    path = nvp.write(tmp_path / "sg3.pkl", nvp.sg3_snapshot(nvp.SG3Config(resolution=16, config=config)))
    G = stylepuppet.load_generator(path)
    assert type(G) is stylegan3.Generator and not G.training
    out = tmp_path / "faces"
    assert run(["generate", "--network", str(path), "--seeds", "0,7", "--trunc", "0.7", "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / "seed0000.png"), str(out / "seed0007.png")]
    for seed in (0, 7):
        with Image.open(out / f"seed{seed:04d}.png") as im:
            assert im.mode == "RGB" and im.size == (16, 16)
            np.testing.assert_array_equal(np.asarray(im), nvidia_generate(G, seed, 0.7))
    assert not np.array_equal(nvidia_generate(G, 0, 0.7), nvidia_generate(G, 0, 1.0))  # truncation reaches w


def test_a_stylegan3_registry_entry_loads_by_name(tmp_path, monkeypatch):
    path = nvp.write(tmp_path / "sg3.pkl", nvp.sg3_snapshot(nvp.SG3Config(resolution=16)))
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    with serve() as server:
        url = server.add("sg3.pkl", path.read_bytes())
        monkeypatch.setattr(weights, "REGISTRY", {"tiny-sg3": WeightsEntry(
            name="tiny-sg3", url=url, filename="sg3.pkl", sha256=None, size=None, licence="Test, https://x.invalid",
            kind="stylegan3", resolution=16, description="tiny")})
        G = stylepuppet.load_generator("tiny-sg3")
        assert run(["generate", "--network", "tiny-sg3", "--seeds", "3", "-o", str(tmp_path / "out")]) == 0
    assert type(G) is stylegan3.Generator
    with Image.open(tmp_path / "out" / "seed0003.png") as im:
        np.testing.assert_array_equal(np.asarray(im), nvidia_generate(G, 3, 1.0))


def test_animate_free_in_w_plus_then_render(cache, media_dir, animation_pickle, tmp_path):
    out = tmp_path / "free"
    assert run(["animate", "--mode", "free", "--preset", "seed", "--space", "w+", "--driving",
                str(media_dir / "d0.mp4"), "--network", str(animation_pickle), "--max-frames", "3", *FAST,
                "-o", str(out)]) == 0
    G = stylepuppet.load_generator(animation_pickle)
    with np.load(out / "latents.npz") as z:
        ws = z["ws"]
        assert ws.shape == (3, G.num_ws, G.w_dim) and not [k for k in z.files if k.startswith("noise/")]
    assert not np.allclose(ws[0], ws[0, :1])  # W+: the layers' latents moved apart
    frames = decode(out / "animation.mp4")
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)
    again = tmp_path / "again.mp4"
    assert run(["render", str(out / "latents.npz"), "--network", str(animation_pickle), "-o", str(again)]) == 0
    rendered = decode(again)
    assert len(rendered) == 3
    # Same frames below the run's UNTRAINED stamp (H.264 adds a little noise of its own), and they are the
    # network's images of the latents (the frames in reverse order differ by 11).
    assert np.mean([np.abs(a[32:].astype(int) - b[32:].astype(int)).mean() for a, b in zip(rendered, frames)]) <= 3
    with torch.no_grad():
        images = G.synthesis(torch.from_numpy(ws).float())
    expected = (images.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(rendered, expected)]) <= 3


def test_animate_keep_identity_in_w(cache, media_dir, animation_pickle, tmp_path):
    out = tmp_path / "ki"
    assert run(["animate", "--look", str(media_dir / "s3.jpg"), "--space", "w", "--driving",
                str(media_dir / "d0.mp4"), "--network", str(animation_pickle), "--max-frames", "2", *FAST,
                "-o", str(out)]) == 0
    with np.load(out / "latents.npz") as z:
        assert z["ws"].shape == (2, 1, 8)
    assert len(decode(out / "animation.mp4")) == 2


def test_project_a_look_into_a_stylegan3_network(cache, media_dir, animation_pickle, tmp_path):
    assert run(["project", str(media_dir / "s1.jpg"), "--network", str(animation_pickle), *FAST,
                "-o", str(tmp_path)]) == 0
    latent = LookLatent.load(tmp_path / "look_latent.npz")
    G = stylepuppet.load_generator(animation_pickle)
    assert latent.latent.shape == (G.num_ws, G.w_dim) and latent.space == "w+" and not latent.noise
    with Image.open(tmp_path / "look_reconstruction.png") as im:
        assert im.size == (128, 64)
