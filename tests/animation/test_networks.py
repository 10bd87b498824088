import dataclasses

import pytest
import torch

from stylepuppet.animation.networks import load_networks, seeded
from stylepuppet.config import resolve_config
from stylepuppet.errors import UntrainedWarning, WeightsError
from stylepuppet.generators.checkpoints import save_generator
from stylepuppet.generators.dcgan import DCGANLatents
from stylepuppet.generators.stylegan2 import untrained_stylegan2
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.landmarks.fan import untrained_fan
from stylepuppet.perceptual.look import MSSSIMLook


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))


def cfg(**overrides):
    return resolve_config("keep-identity", None, {"untrained": True, **overrides})


def test_untrained_substitutes_only_missing_registry_weights_and_says_so():
    with pytest.warns(UntrainedWarning, match=r"generator \(stylegan2-ffhq-256\), landmark net \(fan-2dfan4\), "
                                              r"LPIPS \(lpips-vgg16\)"):
        nets = load_networks(cfg())
    assert len(nets.untrained) == 3
    assert isinstance(nets.generator, StyleGAN2Latents) and nets.generator.img_resolution == 64
    assert nets.landmark_net.num_modules == 1  # the tiny FAN
    assert nets.heatmap_renderer is not None


def untrained(seed: int):
    with seeded(seed):
        return untrained_stylegan2("tiny")


def test_untrained_networks_are_the_same_for_the_same_seed():
    a, b, c = (untrained(seed) for seed in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.synthesis.b4.const, c.synthesis.b4.const)
    assert all(float(p.detach()) == pytest.approx(0.1) for n, p in a.named_parameters() if n.endswith("noise_strength"))


def test_a_network_given_by_path_is_loaded_as_it_is(tmp_path):
    G = untrained(5)
    path = save_generator(G, tmp_path / "g.safetensors")
    torch.manual_seed(0)
    fan = untrained_fan("tiny")
    torch.save(fan.state_dict(), tmp_path / "fan.pth")
    with pytest.warns(UntrainedWarning) as record:
        nets = load_networks(cfg(network=str(path), **{"landmarks.weights": str(tmp_path / "fan.pth")}))
    assert nets.untrained == ["LPIPS (lpips-vgg16)"] and len(record) == 1
    assert torch.equal(nets.generator.G.synthesis.b4.const, G.synthesis.b4.const)
    assert torch.equal(nets.landmark_net.conv1.weight, fan.conv1.weight)


def test_a_missing_path_is_never_substituted(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_networks(cfg(network=str(tmp_path / "nope.pkl")))


def test_without_untrained_missing_weights_are_an_error_naming_the_file(tmp_path):
    with pytest.raises(WeightsError, match="cannot download stylegan2-ffhq-256 .* put the file at"):
        load_networks(dataclasses.replace(cfg(), untrained=False))


def test_dcgan_file_and_the_weights_free_look_loss(models_dir):
    mesh = {"landmarks.net": "mesh", "landmarks.weights": str(models_dir / "face_landmark.tflite")}
    nets = load_networks(cfg(network=str(models_dir / "digiface_dcgan64_G.pt"), space="w", look_loss="msssim", **mesh))
    assert isinstance(nets.generator, DCGANLatents) and isinstance(nets.look, MSSSIMLook)
    assert nets.untrained == [] and nets.heatmap_renderer is None


def test_dcgan_has_no_w_plus(models_dir):
    with pytest.raises(WeightsError, match="single-latent generator without W\\+; use --space w"):
        load_networks(cfg(network=str(models_dir / "digiface_dcgan64_G.pt"), look_loss="msssim"))


def test_free_mode_has_no_look_metric():
    with pytest.warns(UntrainedWarning):
        assert load_networks(cfg(mode="free")).look is None
