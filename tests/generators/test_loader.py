import nvidia_pickle as nvp
import pytest
import torch
from weights_server import serve

import stylepuppet
from stylepuppet import weights
from stylepuppet.cli import run
from stylepuppet.errors import WeightsError
from stylepuppet.generators import loader
from stylepuppet.generators.checkpoints import save_generator
from stylepuppet.generators.loader import GeneratorFormat, convert_generator, identify, load_generator_file
from stylepuppet.generators.stylegan2 import Generator
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.weights import WeightsEntry


@pytest.fixture
def tiny_file(tmp_path):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16,
                  synthesis_kwargs={"channel_base": 64, "channel_max": 16})
    path = tmp_path / "tiny.safetensors"
    save_generator(G, path)
    return G.eval(), path


def same_outputs(a: Generator, b: Generator) -> bool:
    z = torch.randn(2, a.z_dim)
    c = torch.zeros(2, 0)
    with torch.no_grad():
        return torch.equal(a(z, c, truncation_psi=0.5), b(z, c, truncation_psi=0.5))


def test_load_generator_from_path_url_and_name(tiny_file, tmp_path, monkeypatch):
    G, path = tiny_file
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    assert "load_generator" in stylepuppet.__all__
    assert same_outputs(G, stylepuppet.load_generator(path))
    with serve() as server:
        url = server.add("tiny.safetensors", path.read_bytes())
        assert same_outputs(G, stylepuppet.load_generator(url))
        monkeypatch.setattr(weights, "REGISTRY", {
            "tiny": WeightsEntry("tiny", url, "tiny.safetensors", None, None, "Test, https://x.invalid", "stylegan2",
                                 16, "tiny"),
            "fan": WeightsEntry("fan", url, "fan.pth", None, None, "Test, https://x.invalid", "fan", 256, "fan")})
        loaded = stylepuppet.load_generator("tiny", device="cpu")
        assert same_outputs(G, loaded) and not loaded.training
        with pytest.raises(WeightsError, match="fan is a fan file, not stylegan2 or stylegan3 weights"):
            stylepuppet.load_generator("fan")


def test_nvidia_pickle_by_path_with_which_and_conversion(tmp_path, capsys):
    pkl = nvp.write(tmp_path / "network-snapshot.pkl", nvp.snapshot(nvp.Config(resolution=16)))
    G_ema, G = stylepuppet.load_generator(pkl), stylepuppet.load_generator(str(pkl), which="G")
    assert same_outputs(G_ema, load_generator_file(pkl)) and same_outputs(G, load_generator_file(pkl, which="G"))
    assert not same_outputs(G, G_ema)
    out = tmp_path / "g.safetensors"
    assert run(["weights", "convert", str(pkl), str(out), "--which", "G"]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert same_outputs(G, stylepuppet.load_generator(out))


def test_every_generator_file_is_recognised_by_its_content(tmp_path, models_dir):
    pkl = nvp.write(tmp_path / "net.pkl", nvp.snapshot(nvp.Config(resolution=8)))
    ours = convert_generator(pkl, tmp_path / "net.bin")
    assert identify(pkl)[0].name == "NVIDIA network pickle"
    assert identify(ours)[0].name == "stylepuppet safetensors"
    assert identify(models_dir / "digiface_dcgan64_G.pt")[0].name == "DCGAN-tutorial state dict"
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(WeightsError, match="not a generator weights file .*give one of: NVIDIA network pickle"):
        identify(tmp_path / "notes.txt")


def test_a_format_added_to_the_list_is_read_by_every_loader(tmp_path, monkeypatch):
    net = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=4, synthesis_kwargs={"channel_base": 64})
    odd = GeneratorFormat("odd", lambda f: f.head.startswith(b"ODD"), lambda f, which: net,
                          lambda G, space, seed: StyleGAN2Latents(G, space))
    monkeypatch.setattr(loader, "FORMATS", (*loader.FORMATS, odd))
    (tmp_path / "g.odd").write_bytes(b"ODD generator")
    assert stylepuppet.load_generator(tmp_path / "g.odd") is net
    assert loader.load_latent_generator(tmp_path / "g.odd", "w").G is net
