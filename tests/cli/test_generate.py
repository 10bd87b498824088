import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from weights_server import serve

import stylepuppet
from stylepuppet import weights
from stylepuppet.cli import run
from stylepuppet.cli.generate import parse_seeds
from stylepuppet.generators.checkpoints import save_generator
from stylepuppet.generators.stylegan2 import Generator
from stylepuppet.weights import WeightsEntry


def tiny(c_dim: int = 0) -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16,
                  synthesis_kwargs={"channel_base": 64, "channel_max": 16}).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)  # make the noise inputs visible in the output
        G.mapping.w_avg.normal_()
    return G


@pytest.fixture
def saved(tmp_path):
    G = tiny()
    path = tmp_path / "tiny.safetensors"
    save_generator(G, path)
    return G, path


def expected(G: Generator, seed: int, psi: float, label: torch.Tensor | None = None) -> np.ndarray:
    """NVIDIA's generate.py for one seed, written out."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    c = torch.zeros(1, G.c_dim) if label is None else label
    with torch.no_grad():
        img = G(z.float(), c, truncation_psi=psi, noise_mode="const")
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5") == [5]
    assert parse_seeds("3, 1-2,3") == [3, 1, 2]
    for bad in ("", "a", "3-1", "-1", "1-", "1,,2", str(2**32)):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_generate_writes_nvidias_images_for_the_seeds(saved, tmp_path, capsys):
    G, path = saved
    out = tmp_path / "faces"
    assert run(["generate", "--network", str(path), "--seeds", "0-1,5", "--trunc", "0.7", "-o", str(out)]) == 0
    names = ["seed0000.png", "seed0001.png", "seed0005.png"]
    assert capsys.readouterr().out.splitlines() == [str(out / n) for n in names]
    assert sorted(p.name for p in out.iterdir()) == names
    for seed, name in zip((0, 1, 5), names, strict=True):
        with Image.open(out / name) as im:
            assert im.mode == "RGB" and im.size == (16, 16)
            np.testing.assert_array_equal(np.asarray(im), expected(G, seed, 0.7))
    with Image.open(out / "seed0000.png") as a, Image.open(out / "seed0001.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_noise_modes_differ_and_random_is_reproducible(saved, tmp_path):
    _, path = saved
    images = {}
    for mode, folder in (("const", "c"), ("none", "n"), ("random", "r1"), ("random", "r2")):
        assert run(["generate", "--network", str(path), "--seeds", "3", "--noise-mode", mode,
                    "-o", str(tmp_path / folder)]) == 0
        with Image.open(tmp_path / folder / "seed0003.png") as im:
            images[folder] = np.asarray(im)
    assert not np.array_equal(images["c"], images["n"]) and not np.array_equal(images["c"], images["r1"])
    np.testing.assert_array_equal(images["r1"], images["r2"])


def test_class_conditional_networks(tmp_path, capsys):
    G = tiny(c_dim=3)
    path = tmp_path / "cond.safetensors"
    save_generator(G, path)
    out = tmp_path / "out"
    assert run(["generate", "--network", str(path), "--seeds", "2", "-o", str(out)]) == 1
    assert capsys.readouterr().err == ("error: the network is class-conditional (3 classes); give --class-idx "
                                       "0..2\n")
    assert run(["generate", "--network", str(path), "--seeds", "2", "--class-idx", "3", "-o", str(out)]) == 1
    assert "out of range" in capsys.readouterr().err
    assert run(["generate", "--network", str(path), "--seeds", "2", "--class-idx", "1", "-o", str(out)]) == 0
    with Image.open(out / "seed0002.png") as im:
        np.testing.assert_array_equal(np.asarray(im), expected(G, 2, 1.0, torch.tensor([[0.0, 1.0, 0.0]])))


def test_generate_from_a_registry_name_downloads_once(saved, tmp_path, monkeypatch, capsys):
    G, path = saved
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    with serve() as server:
        url = server.add("tiny.safetensors", path.read_bytes())
        monkeypatch.setattr(weights, "REGISTRY", {"tiny": WeightsEntry(
            name="tiny", url=url, filename="tiny.safetensors", sha256=None, size=None,
            licence="Test, https://x.invalid", kind="stylegan2", resolution=16, description="tiny")})
        for folder in ("a", "b"):
            assert run(["generate", "--network", "tiny", "--seeds", "4", "-o", str(tmp_path / folder)]) == 0
        assert len(server.requests) == 1
    with Image.open(tmp_path / "b" / "seed0004.png") as im:
        np.testing.assert_array_equal(np.asarray(im), expected(G, 4, 1.0))


def test_bad_options_are_usage_errors(saved, tmp_path, capsys):
    _, path = saved
    assert run(["generate", "--network", str(path), "--seeds", "3-1", "-o", str(tmp_path)]) == 2
    assert "range '3-1' runs backwards" in capsys.readouterr().err


def test_missing_network_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "STYLEPUPPET_CACHE": str(tmp_path / "cache")}
    missing = tmp_path / "nets" / "ffhq.pkl"
    proc = subprocess.run([sys.executable, "-m", "stylepuppet", "generate", "--network", str(missing),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == (f"error: no such weights file: {missing}; check the path, or give a registry name "
                           "(`stylepuppet weights list`)\n")
    assert not (tmp_path / "out").exists()


def test_generate_reads_every_generator_format_the_animation_does(models_dir, tmp_path, capsys):
    out = tmp_path / "dcgan"
    assert run(["generate", "--network", str(models_dir / "digiface_dcgan64_G.pt"), "--seeds", "0-3", "-o",
                str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"seed000{i}.png" for i in range(4)]
    G = stylepuppet.load_generator(models_dir / "digiface_dcgan64_G.pt")
    z = torch.from_numpy(np.random.RandomState(2).randn(1, 100)).float()
    with torch.no_grad():
        face = (G(z, None) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    with Image.open(out / "seed0002.png") as im:
        assert im.size == (64, 64) and np.array_equal(np.asarray(im), face)
    assert run(["generate", "--network", str(models_dir / "digiface_dcgan64_G.pt"), "--trunc", "0.7",
                "-o", str(out)]) == 1
    assert "no truncation" in capsys.readouterr().err
