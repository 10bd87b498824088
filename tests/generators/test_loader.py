import pytest
import torch
from weights_server import serve

import stylepuppet
from stylepuppet import weights
from stylepuppet.errors import WeightsError
from stylepuppet.generators.checkpoints import save_generator
from stylepuppet.generators.stylegan2 import Generator
from stylepuppet.weights import WeightsEntry


@pytest.fixture
def tiny_file(tmp_path):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, synthesis_kwargs=dict(channel_base=64, channel_max=16))
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
        with pytest.raises(WeightsError, match="fan is a fan file, not stylegan2 weights"):
            stylepuppet.load_generator("fan")


def test_nvidia_pickle_by_path_with_which_and_conversion(tmp_path, capsys):
    import nvidia_pickle as nvp

    from stylepuppet.cli import run
    from stylepuppet.generators.checkpoints import load_generator_file

    pkl = nvp.write(tmp_path / "network-snapshot.pkl", nvp.snapshot(nvp.Config(resolution=16)))
    G_ema, G = stylepuppet.load_generator(pkl), stylepuppet.load_generator(str(pkl), which="G")
    assert same_outputs(G_ema, load_generator_file(pkl)) and same_outputs(G, load_generator_file(pkl, which="G"))
    assert not same_outputs(G, G_ema)
    out = tmp_path / "g.safetensors"
    assert run(["weights", "convert", str(pkl), str(out), "--which", "G"]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert same_outputs(G, stylepuppet.load_generator(out))
