import math

import pytest
import torch

from stylepuppet.animation.networks import load_latent_generator as load_for_config
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import ConfigError, UnsafePickleError, WeightsError
from stylepuppet.generators.dcgan import (
    DCGANGenerator,
    DCGANLatents,
    DCGANLayout,
    dcgan_generator,
    detect_layout,
    is_dcgan_state_dict,
    sphere_project,
)
from stylepuppet.generators.interface import ImageGenerator, LatentGenerator
from stylepuppet.generators.loader import load_generator_file, load_latent_generator

TINY = DCGANLayout(z_dim=8, widths=(16, 8, 3), conv_bias=False)


def _tiny_state(layout: DCGANLayout = TINY, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    G = DCGANGenerator(layout)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return G.state_dict()


def latents(state: dict, seed: int = 0) -> DCGANLatents:
    return DCGANLatents(dcgan_generator(state), seed=seed)


def test_layout_of_the_shipped_generator(models_dir):
    state = torch.load(models_dir / "digiface_dcgan64_G.pt", map_location="cpu", weights_only=True)
    layout = detect_layout(state)
    assert layout == DCGANLayout(z_dim=100, widths=(512, 256, 128, 64, 3), conv_bias=False)
    assert layout.img_resolution == 64


def test_layout_round_trips_through_a_state_dict():
    for layout in (TINY, DCGANLayout(z_dim=5, widths=(12, 6, 4, 3), conv_bias=True)):
        state = _tiny_state(layout)
        assert detect_layout(state) == layout
        G = latents(state)
        assert G.img_resolution == layout.img_resolution == 4 * 2 ** (len(layout.widths) - 1)


def test_nested_and_dataparallel_state_dicts_are_recognised():
    state = _tiny_state()
    assert detect_layout({"netG_state_dict": state, "epoch": 3}) == TINY
    assert detect_layout({f"module.{k}": v for k, v in state.items()}) == TINY
    without_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert detect_layout(without_counters) == TINY
    G = latents(without_counters)
    z = G.candidate_latents(2, torch.Generator().manual_seed(0))
    assert torch.equal(G.render(z), latents(state).render(z))


@pytest.mark.parametrize("mutate", [
    lambda s: s.pop("main.1.running_var"),
    lambda s: s.update({"main.3.weight": torch.zeros(9, 8, 4, 4)}),  # widths do not chain
    lambda s: s.update({"main.0.weight": torch.zeros(8, 16, 3, 3)}),  # not the tutorial's 4x4 kernels
    lambda s: s.update({"mapping.fc0.weight": torch.zeros(2, 2)}),
    lambda s: s.clear(),
])
def test_other_layouts_are_rejected_with_a_clear_error(mutate):
    state = _tiny_state()
    mutate(state)
    assert detect_layout(state) is None and not is_dcgan_state_dict(state)
    with pytest.raises(WeightsError, match="matches no known generator layout"):
        dcgan_generator(state)


def test_files_that_are_no_dcgan_are_refused_by_the_loader(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_latent_generator(tmp_path / "missing.pt", "w")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(WeightsError, match="holds no generator stylepuppet reads .*DCGAN-tutorial state dict"):
        load_latent_generator(tmp_path / "tensor.pt", "w")
    torch.save({"main.0.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="holds no generator stylepuppet reads .*it holds: main.0.weight"):
        load_latent_generator(tmp_path / "other.pt", "w")
    torch.save({"G": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # a pickled module: refused, never run
    with pytest.raises(UnsafePickleError, match="refused to load: it calls torch.nn.modules.linear.Linear"):
        load_latent_generator(tmp_path / "module.pt", "w")


def test_the_network_is_called_like_nvidias_generators(models_dir):
    G = load_generator_file(models_dir / "digiface_dcgan64_G.pt")
    assert isinstance(G, ImageGenerator) and (G.z_dim, G.c_dim, G.img_resolution) == (100, 0, 64)
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z, torch.zeros(2, 0), truncation_psi=1, noise_mode="const"), G.main(z.view(2, 100, 1, 1)))
        with pytest.raises(ConfigError, match="no truncation"):
            G(z, None, truncation_psi=0.7)


def test_latents_stay_on_the_sphere():
    G = latents(_tiny_state())
    assert isinstance(G, LatentGenerator)
    assert (G.latent_dim, G.num_ws, G.supports_wplus, G.latent_std(), G.noise_buffers()) == (8, 1, False, 1.0, {})
    z = torch.randn(5, 1, 8) * torch.tensor([0.1, 1, 3, 10, 100]).view(5, 1, 1)
    projected = G.constrain(z)
    assert torch.allclose(projected.norm(dim=-1), torch.full((5, 1), math.sqrt(8)))
    assert torch.allclose(G.constrain(projected), projected)
    assert torch.allclose(projected / projected.norm(dim=-1, keepdim=True), z / z.norm(dim=-1, keepdim=True))
    cands = G.candidate_latents(7, torch.Generator().manual_seed(1))
    assert cands.shape == (7, 1, 8)
    assert torch.allclose(cands.norm(dim=-1), torch.full((7, 1), math.sqrt(8)))
    mean = G.mean_latent()
    assert mean.shape == (8,) and torch.equal(mean, G.mean_latent())
    assert math.isclose(mean.norm().item(), math.sqrt(8), rel_tol=1e-6)
    assert not torch.equal(mean, latents(_tiny_state(), seed=1).mean_latent())


def test_sphere_project_keeps_direction_and_handles_batches():
    z = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    assert torch.allclose(sphere_project(z), torch.tensor([[0.6, 0.8], [0.0, -1.0]]) * math.sqrt(2))


def test_render_matches_the_reference_layers_in_eval_mode():
    state = _tiny_state()
    G = latents(state)
    z = G.candidate_latents(3, torch.Generator().manual_seed(2))
    x = z[:, 0].reshape(3, 8, 1, 1)
    # The tutorial's layers written out, BatchNorm with the stored statistics.
    for i, stride, pad in ((0, 1, 0), (3, 2, 1)):
        x = torch.nn.functional.conv_transpose2d(x, state[f"main.{i}.weight"], stride=stride, padding=pad)
        x = torch.nn.functional.batch_norm(x, state[f"main.{i + 1}.running_mean"], state[f"main.{i + 1}.running_var"],
                                           state[f"main.{i + 1}.weight"], state[f"main.{i + 1}.bias"], eps=1e-5)
        x = torch.relu(x)
    x = torch.tanh(torch.nn.functional.conv_transpose2d(x, state["main.6.weight"], stride=2, padding=1))
    out = G.render(z)
    assert out.shape == (3, 3, 16, 16)
    assert torch.allclose(out, x, atol=1e-6)
    assert torch.allclose(G.render(z[1:2]), out[1:2], atol=1e-6)  # eval-mode BN: no batch dependence
    with pytest.raises(ValueError, match=r"latents must be \[N, 1, 8\]"):
        G.render(z[:, 0])


def test_shipped_generator_renders_faces_in_range(models_dir):
    G = load_latent_generator(models_dir / "digiface_dcgan64_G.pt", "w")
    z = G.candidate_latents(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = G.render(z)
    assert img.shape == (4, 3, 64, 64)
    assert img.min() >= -1 and img.max() <= 1 and img.std() > 0.2
    assert not G.G.training


def test_engine_loader_picks_the_dcgan_adapter(models_dir):
    cfg = AnimateConfig(mode="free", space="w", network=str(models_dir / "digiface_dcgan64_G.pt"))
    G = load_for_config(cfg)
    assert isinstance(G, DCGANLatents) and G.img_resolution == 64
