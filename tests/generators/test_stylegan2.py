"""Our StyleGAN2 generator against NVIDIA's names and a plain evaluation of the formulas."""

from __future__ import annotations

import math

import nvidia_pickle as nvp
import pytest
import stylegan2_reference as ref
import torch

from stylepuppet.errors import ConfigError
from stylepuppet.generators.stylegan2 import (
    Generator,
    SynthesisLayer,
    setup_filter,
    upfirdn2d,
    upsample2d,
)


def build(cfg: nvp.Config, seed: int = 0, **synthesis: object) -> tuple[Generator, dict[str, torch.Tensor]]:
    """Our generator holding the random weights of an NVIDIA-named module tree (and that flat state)."""
    state = nvp.generator(cfg, seed).flat_state()
    G = Generator(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                  img_channels=cfg.img_channels, mapping_kwargs={"num_layers": cfg.num_layers},
                  synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                                    "conv_clamp": cfg.conv_clamp, **synthesis})
    G.load_state_dict(state, strict=True)
    return G.eval(), state


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max())


def test_state_dict_names_shapes_and_order_are_nvidias():
    for cfg in (nvp.Config(resolution=32), nvp.Config(resolution=8, c_dim=5, img_channels=1)):
        G, _ = build(cfg)
        theirs = nvp.generator(cfg).flat_state()
        assert list(G.state_dict()) == list(theirs)
        assert all(G.state_dict()[k].shape == v.shape for k, v in theirs.items())
    G = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, synthesis_kwargs={"use_noise": False})
    names = list(G.state_dict())
    assert not any("noise" in n for n in names) and "synthesis.b8.conv0.weight" in names
    assert names[0] == "synthesis.b4.const" and names[-1].startswith("mapping.fc7")
    assert G.synthesis.b8.conv0.weight.shape == (512, 512, 3, 3)  # channel_base 32768, channel_max 512


@pytest.mark.parametrize(("resolution", "c_dim", "clamp"), [(4, 0, None), (8, 3, None), (16, 0, 0.5), (32, 2, None)])
def test_outputs_equal_the_formulas(resolution, c_dim, clamp):
    cfg = nvp.Config(resolution=resolution, c_dim=c_dim, conv_clamp=clamp)
    G, state = build(cfg)
    assert G.num_ws == ref.num_ws(resolution)
    torch.manual_seed(1)
    z = torch.randn(2, cfg.z_dim)
    c = torch.eye(max(c_dim, 1))[:2, :c_dim]
    with torch.no_grad():
        ws = G.mapping(z, c)
        assert close(ws, ref.mapping(state, z, c, cfg.num_layers, G.num_ws))
        wplus = ws + torch.randn_like(ws)
        img = G.synthesis(wplus)
    assert img.shape == (2, 3, resolution, resolution) and img.dtype == torch.float32
    assert close(img, ref.synthesis(state, wplus, resolution, clamp))


def test_w_is_broadcast_to_every_layer_and_g_is_mapping_then_synthesis():
    G, _ = build(nvp.Config(resolution=16))
    z = torch.randn(3, 8)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7)
        assert torch.equal(ws, ws[:, :1].expand_as(ws))
        assert torch.equal(G.synthesis(ws[:, 0]), G.synthesis(ws))
        assert torch.equal(G(z, None, truncation_psi=0.7), G.synthesis(ws))
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 6, 8\]"):
        G.synthesis(torch.zeros(1, 5, 8))


def test_truncation_psi_and_cutoff():
    cfg = nvp.Config(resolution=16)
    G, state = build(cfg)
    z = torch.randn(4, 8)
    with torch.no_grad():
        plain = G.mapping(z, None)
        for psi, cutoff in ((0.5, None), (0.5, 2), (-0.3, 4), (0.0, None)):
            ws = G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff)
            assert close(ws, ref.mapping(state, z, None, cfg.num_layers, G.num_ws, psi, cutoff))
            cut = G.num_ws if cutoff is None else cutoff
            assert torch.equal(ws[:, cut:], plain[:, cut:])
        assert torch.allclose(G.mapping(z, None, truncation_psi=0), G.mapping.w_avg.expand(4, 6, 8))


def test_conv_clamp_clamps_every_layer():
    cfg = nvp.Config(resolution=16, conv_clamp=0.25)
    G, state = build(cfg)
    with torch.no_grad():  # large biases drive the activations far beyond the clamp
        for name, p in G.named_parameters():
            if name.endswith(".bias") and "affine" not in name and "mapping" not in name:
                p.mul_(40)
    state = {**state, **{k: v.clone() for k, v in G.state_dict().items()}}
    peaks = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: peaks.append(out.abs().max().item()))
             for m in G.modules() if isinstance(m, SynthesisLayer)]
    ws = torch.randn(2, G.num_ws, 8)
    with torch.no_grad():
        img = G.synthesis(ws)
    for h in hooks:
        h.remove()
    assert len(peaks) == 5 and all(p == pytest.approx(0.25) for p in peaks)
    assert close(img, ref.synthesis(state, ws, 16, clamp=0.25))
    unclamped = Generator(**{**G.init_kwargs, "synthesis_kwargs": {**G.init_kwargs["synthesis_kwargs"],
                                                                   "conv_clamp": None}})
    unclamped.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert unclamped.synthesis(ws).abs().max() > 10 * img.abs().max()


def test_class_conditional_mapping():
    cfg = nvp.Config(resolution=8, c_dim=4)
    G, state = build(cfg)
    z = torch.randn(1, 8).repeat(4, 1)
    c = torch.eye(4)
    with torch.no_grad():
        ws = G.mapping(z, c)
    assert close(ws, ref.mapping(state, z, c, cfg.num_layers, G.num_ws))
    assert all(not torch.allclose(ws[i], ws[j]) for i in range(4) for j in range(i))
    assert G.mapping.fc0.weight.shape == (8, 16) and G.mapping.embed.weight.shape == (8, 4)
    with pytest.raises(ValueError, match=r"c must have shape \[N, 4\]"):
        G.mapping(z, None)


def test_noise_modes():
    cfg = nvp.Config(resolution=16, noise_strength=0.7)
    G, state = build(cfg)
    ws = torch.randn(2, G.num_ws, 8)
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        assert torch.equal(const, G.synthesis(ws))  # "const" is the default and reproducible
        assert close(const, ref.synthesis(state, ws, 16, noise="const"))
        assert close(G.synthesis(ws, noise_mode="none"), ref.synthesis(state, ws, 16, noise="none"))
        first, second = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        assert not torch.allclose(first, second) and not torch.allclose(first, const)
        buffers = {n: b for n, b in G.named_buffers() if n.endswith("noise_const")}
        assert sorted(buffers) == sorted(f"synthesis.b{r}.conv{i}.noise_const" for r, i in
                                         ((4, 1), (8, 0), (8, 1), (16, 0), (16, 1)))
        buffers["synthesis.b8.conv1.noise_const"].zero_()
        assert not torch.allclose(G.synthesis(ws), const)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_gradients_reach_every_w_of_w_plus():
    G, _ = build(nvp.Config(resolution=32))
    G.requires_grad_(False)
    ws = torch.randn(2, G.num_ws, 8, requires_grad=True)
    G.synthesis(ws).square().mean().backward()
    per_w = ws.grad.abs().sum(dim=(0, 2))
    assert per_w.shape == (8,) and bool((per_w > 0).all())


def test_config_is_checked_and_init_kwargs_rebuild():
    with pytest.raises(ConfigError, match="only the 'skip' synthesis architecture"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, synthesis_kwargs={"architecture": "resnet"})
    with pytest.raises(ConfigError, match="unsupported synthesis_kwargs: kernel_size"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, synthesis_kwargs={"kernel_size": 1})
    with pytest.raises(ConfigError, match="img_resolution must be 4 x 2"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=24)
    with pytest.raises(ConfigError, match="w_avg_beta=None"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, mapping_kwargs={"w_avg_beta": None})
    with pytest.raises(ConfigError, match="channel_base must be >= img_resolution"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=64, synthesis_kwargs={"channel_base": 32})
    with pytest.raises(ConfigError, match="activation 'gelu'"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, mapping_kwargs={"activation": "gelu"})
    kwargs = {"z_dim": 4, "c_dim": 2, "w_dim": 6, "img_resolution": 8, "img_channels": 1,
              "mapping_kwargs": {"num_layers": 3, "layer_features": 5, "embed_features": 3, "lr_multiplier": 0.1},
              "synthesis_kwargs": {"channel_base": 64, "channel_max": 8, "num_fp16_res": 4, "conv_clamp": 256,
                                   "resample_filter": [1, 2, 1], "fp16_channels_last": True}}
    G = Generator(**kwargs)
    assert G.init_kwargs["mapping_kwargs"] == kwargs["mapping_kwargs"] and G.num_ws == 4 and G.img_channels == 1
    again = Generator(**G.init_kwargs)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    assert G.mapping.fc0.weight.shape == (5, 7) and G.mapping.fc2.weight.shape == (6, 5)
    assert G.synthesis.b8.resample_filter.shape == (3, 3)
    assert G(torch.randn(2, 4), torch.eye(2)).shape == (2, 1, 8, 8)


def test_fir_helpers_match_the_explicit_filter():
    x = torch.randn(2, 3, 5, 5)
    f = setup_filter([1, 3, 3, 1])
    assert torch.allclose(f, ref.FIR2D) and f.sum() == pytest.approx(1)
    up = upsample2d(x, f)
    assert up.shape == (2, 3, 10, 10)
    expected = torch.stack([ref.fir(ref.zero_insert(img, trailing=True), 2, 1, 2, 1, gain=4) for img in x])
    assert torch.allclose(up, expected, atol=1e-6)
    separable = setup_filter([1, 1, 1, 1, 1, 1, 1, 1])
    assert separable.ndim == 1
    box = upfirdn2d(x, separable, padding=(4, 3, 4, 3))
    assert torch.allclose(box[:, :, 2, 2], x.mean(dim=(2, 3)) * 25 / 64, atol=1e-6)  # 5x5 image inside an 8x8 box


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_unchanged_on_cuda():
    G, _ = build(nvp.Config(resolution=16))
    ws = torch.randn(2, G.num_ws, 8)
    with torch.no_grad():
        cpu = G.synthesis(ws)
        gpu = G.cuda().synthesis(ws.cuda(), noise_mode="const").cpu()
        G.synthesis(ws.cuda(), noise_mode="random")
    assert close(gpu, cpu, rel=1e-4)


def test_affine_and_gain_constants():
    G, _ = build(nvp.Config(resolution=8))
    assert G.mapping.fc0.weight_gain == pytest.approx(0.01 / math.sqrt(8))
    assert G.synthesis.b8.torgb.weight_gain == pytest.approx(1 / math.sqrt(16))
    assert G.synthesis.b8.conv0.act_gain == pytest.approx(math.sqrt(2))
