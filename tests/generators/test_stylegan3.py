"""Our StyleGAN3 generator against NVIDIA's names and a plain evaluation of its formulas.

The networks are tiny StyleGAN3 pickles written in NVIDIA's format by ``nvidia_pickle`` (their
filters designed with scipy as NVIDIA does) and loaded through the safe loader; the reference is
``stylegan3_reference``, a float64 evaluation of the formulas from the pickled tensors and attributes.
"""

from __future__ import annotations

import math

import numpy as np
import nvidia_pickle as nvp
import pytest
import scipy.signal
import stylegan3_reference as ref
import torch

from stylepuppet.errors import ConfigError
from stylepuppet.generators.loader import load_generator_file
from stylepuppet.generators.stylegan3 import (
    Generator,
    band_schedule,
    design_lowpass_filter,
    downsample_fir,
    filtered_lrelu,
    kaiser_attenuation,
    kaiser_beta,
    lowpass_filter,
    nvidia_synthesis_kwargs,
    radial_lowpass_filter,
    upsample_fir,
)


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool((a.double() - b.double()).abs().max() <= rel * b.double().abs().max())


def load(tmp_path, cfg: nvp.SG3Config, seed: int = 0):
    """(our generator loaded from a hand-written NVIDIA pickle, that pickle's G_ema module tree)."""
    snap = nvp.sg3_snapshot(cfg, seed)
    return load_generator_file(nvp.write(tmp_path / f"sg3-{cfg.config}-{seed}.pkl", snap)), snap["G_ema"]


SMALL = {"t": nvp.SG3Config(num_layers=4), "r": nvp.SG3Config(config="r", num_layers=4)}


# ---------------------------------------------------------------------------------------------- schedule, filters


def test_layer_schedule_is_nvidias():
    """Names of NVIDIA's 256² T and 1024² R layers (L{index}_{size}_{channels}), read off its released code."""
    t256 = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=256, synthesis_kwargs=nvidia_synthesis_kwargs(
        "t", 16384)).synthesis
    assert t256.layer_names == ["L0_36_512", "L1_36_512", "L2_36_512", "L3_52_512", "L4_52_512", "L5_84_512",
                                "L6_84_512", "L7_148_362", "L8_148_256", "L9_148_181", "L10_276_128", "L11_276_91",
                                "L12_276_64", "L13_256_64", "L14_256_3"]
    layers = t256.layers()
    assert [(m.up_factor, m.down_factor, m.padding[:2]) for m in layers[2:4]] == [(2, 2, [9, 8]), (4, 2, [-6, -9])]
    assert (layers[13].padding, layers[14].padding, layers[14].up_taps) == ([-11, -12] * 2, [0, 0] * 2, 1)
    bands = band_schedule(1024, 3, 65536, 1024, 14, 2, 2, 2 ** 2.1, 2 ** 0.3, 10)
    assert [f"L{i}_{b.size}_{b.channels}" for i, b in enumerate(bands)] == [
        "L0_36_1024", "L1_36_1024", "L2_52_1024", "L3_52_1024", "L4_84_1024", "L5_148_1024", "L6_148_1024",
        "L7_276_645", "L8_276_406", "L9_532_256", "L10_1044_161", "L11_1044_102", "L12_1044_64", "L13_1024_64",
        "L14_1024_3"]
    # the formulas: geometric cut-offs and stop-bands up to layer N - 2, powers of two >= 2 f_t, half-widths
    cut = np.array([b.cutoff for b in bands])
    assert cut[0] == 2 and np.allclose(cut[12:], 512) and np.allclose(cut[1:13] / cut[:12], 256 ** (1 / 12))
    stop = 2 ** 2.1 * (512 * 2 ** 0.3 / 2 ** 2.1) ** np.minimum(np.arange(15) / 12, 1)
    rates = np.array([b.sampling_rate for b in bands])
    assert np.all(rates == np.minimum(2 ** np.ceil(np.log2(2 * stop)), 1024))
    assert np.allclose([b.half_width for b in bands], np.maximum(stop, rates / 2) - cut)


@pytest.mark.parametrize(("numtaps", "cutoff", "width", "fs"), [(12, 2.0, 12.0, 32), (24, 2.8284, 10.4, 64),
                                                                (12, 128.0, 73.4, 512), (12, 8.0, 3.7, 32)])
def test_kaiser_lowpass_equals_scipy_firwin(numtaps, cutoff, width, fs):
    ours = lowpass_filter(numtaps, cutoff, width, fs)
    assert np.abs(ours - scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)).max() < 1e-14
    assert kaiser_attenuation(numtaps, width / (fs / 2)) == pytest.approx(
        scipy.signal.kaiser_atten(numtaps, width / (fs / 2)), rel=1e-14)
    for atten in (10.0, 21.0, 35.0, 50.0, 80.0):
        assert kaiser_beta(atten) == pytest.approx(scipy.signal.kaiser_beta(atten), rel=1e-14, abs=1e-15)
    assert ours.sum() == pytest.approx(1) and np.allclose(ours, ours[::-1])


def test_every_layers_filters_are_designed_from_its_band():
    """Each layer's up filter is the low-pass of its input band, its down filter that of its output band."""
    G = Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=64, synthesis_kwargs=nvidia_synthesis_kwargs("r", 512, 32))
    checked_radial = 0
    for layer in G.synthesis.layers()[:-1]:
        fs = layer.tmp_sampling_rate
        up = scipy.signal.firwin(layer.up_taps, layer.in_cutoff, width=2 * layer.in_half_width, fs=fs)
        assert np.abs(layer.up_filter.numpy() - up).max() < 1e-7
        if layer.down_radial:
            expected = ref.jinc_lowpass(layer.down_taps, layer.out_cutoff, 2 * layer.out_half_width, fs)
            assert layer.down_filter.shape == (layer.down_taps, layer.down_taps)
            assert np.abs(layer.down_filter.numpy() - expected).max() < 1e-6
            checked_radial += 1
        else:
            down = scipy.signal.firwin(layer.down_taps, layer.out_cutoff, width=2 * layer.out_half_width, fs=fs)
            assert np.abs(layer.down_filter.numpy() - down).max() < 1e-7
    assert checked_radial == 12  # R: radial everywhere but the two critically sampled layers
    torgb = G.synthesis.layers()[-1]
    assert torgb.up_filter is None and torgb.down_filter is None and torgb.conv_kernel == 1
    radial = radial_lowpass_filter(12, 3.0, 5.0, 32)
    assert np.allclose(radial, radial.T) and np.allclose(radial, radial[::-1, ::-1])
    assert radial.sum() == pytest.approx(1)
    assert design_lowpass_filter(1, 3.0, 5.0, 32) is None


@pytest.mark.parametrize(("up", "down", "padding", "radial", "clamp"), [
    (2, 2, (9, 8), False, None), (4, 2, (-6, -9), False, 0.7), (2, 2, (-11, -12), False, None),
    (2, 2, (11, 10), True, None), (4, 2, (-2, -5), True, 1.5), (1, 1, (0, 0), False, 0.5),
    (2, 2, (3, 7), False, None), (4, 2, (30, -2), True, None)])
def test_filtered_lrelu_equals_upsample_lrelu_downsample(up, down, padding, radial, clamp):
    """Float64 against zero insertion, explicit padding and tap sums, where-lrelu, clamp, tap sums, subsampling."""
    gen = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 3, 24, 24, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    fu = torch.as_tensor(lowpass_filter(6 * up, 3.0, 4.0, 16 * up)) if up > 1 else None
    fd = None if down == 1 else torch.as_tensor(
        radial_lowpass_filter(12, 5.0, 6.0, 16 * up) if radial else lowpass_filter(12, 5.0, 6.0, 16 * up))
    gain, slope = (math.sqrt(2), 0.2) if up > 1 else (1.0, 1.0)
    ours = filtered_lrelu(x, fu, fd, bias, up, down, padding, gain=gain, slope=slope, clamp=clamp)
    plain = ref.filtered_lrelu(x, fu, fd, bias, up, down, padding, gain, slope, clamp)
    assert ours.shape == plain.shape
    assert (ours - plain).abs().max() < 1e-12 * plain.abs().max()
    if clamp is not None:
        assert ours.abs().max() <= clamp * (1 if fd is None else fd.abs().sum()) + 1e-12


def test_resampling_ops_shapes_and_gain():
    x = torch.ones(1, 2, 10, 10, dtype=torch.float64)
    f = torch.as_tensor(lowpass_filter(12, 4.0, 6.0, 32))
    up = upsample_fir(x, f, 2, 0, 0)
    assert up.shape == (1, 2, 20 - 11, 20 - 11)
    assert torch.allclose(up, torch.ones_like(up))  # unit DC gain: a constant stays constant where fully covered
    down = downsample_fir(torch.ones(1, 2, 23, 23, dtype=torch.float64), f, 2)
    assert down.shape == (1, 2, 6, 6) and torch.allclose(down, torch.ones_like(down))


# ---------------------------------------------------------------------------------------------- input layer


def test_fourier_features_follow_the_transform(tmp_path):
    """The input layer equals the direct formula, and translating the transform by k pixels shifts the
    features by k pixels (the content moves, the frequencies and amplitudes do not change)."""
    k = 3
    cfg = SMALL["t"]
    G, tree = load(tmp_path, cfg)
    inp = G.synthesis.input
    w = torch.randn(2, cfg.w_dim)
    with torch.no_grad():
        plain = inp(w)
        assert close(plain, ref.fourier_features(tree.children["synthesis"].children["input"], w))
        shift = torch.eye(3)
        shift[0, 2] = k / inp.sampling_rate  # transform maps output pixels to where they read the features
        inp.transform.copy_(shift)
        moved = inp(w)
    theirs = tree.children["synthesis"].children["input"]
    theirs.buffers["transform"] = shift
    assert close(moved, ref.fourier_features(theirs, w))
    # with the w-predicted rotation and translation off, a shift of the user transform is a pure translation
    with torch.no_grad():
        inp.affine.weight.zero_()
        inp.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        moved = inp(w)
        inp.transform.copy_(torch.eye(3))
        still = inp(w)
    assert torch.allclose(moved[..., :-k], still[..., k:], atol=1e-5)
    assert not torch.allclose(moved, still, atol=1e-3)


# ---------------------------------------------------------------------------------------------- whole network


@pytest.mark.parametrize("config", ["t", "r"])
def test_loaded_pickle_equals_the_formulas(tmp_path, config):
    cfg = SMALL[config]
    G, tree = load(tmp_path, cfg)
    assert isinstance(G, Generator) and not G.training and not any(p.requires_grad for p in G.parameters())
    state = tree.flat_state()
    assert list(G.state_dict()) == list(state) and all(torch.equal(G.state_dict()[k], v) for k, v in state.items())
    assert (G.num_ws, G.w_dim, G.z_dim, G.img_resolution, G.mapping.w_avg.shape) == (6, 8, 8, 16, (8,))
    torch.manual_seed(0)
    z = torch.randn(2, cfg.z_dim)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=3)
        assert close(ws, ref.mapping(tree, z, None, 0.7, 3))
        wplus = ws + torch.randn_like(ws)
        img = G.synthesis(wplus, noise_mode="const")
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32
    assert close(img, ref.synthesis(tree, wplus))


def test_default_depth_with_labels_clamp_and_transform(tmp_path):
    """NVIDIA's default 14 layers, a class-conditional mapping, a tight clamp and a rotated input transform."""
    a = math.radians(30)
    transform = torch.tensor([[math.cos(a), -math.sin(a), 0.4], [math.sin(a), math.cos(a), -0.1], [0, 0, 1]])
    cfg = nvp.SG3Config(c_dim=3, conv_clamp=0.3, transform=transform)
    G, tree = load(tmp_path, cfg)
    assert G.num_ws == 16 and all(m.conv_clamp == 0.3 for m in G.synthesis.layers())
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    with torch.no_grad():
        ws = G.mapping(z, c)
        assert close(ws, ref.mapping(tree, z, c))
        assert close(G.synthesis(ws), ref.synthesis(tree, ws))


def test_w_and_w_plus_and_noise_modes_agree(tmp_path):
    G, _ = load(tmp_path, SMALL["t"])
    z = torch.randn(3, 8)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7)
        assert torch.equal(ws, ws[:, :1].expand_as(ws))
        img = G.synthesis(ws)
        assert torch.equal(G.synthesis(ws[:, 0]), img)
        assert torch.equal(G(z, None, truncation_psi=0.7), img)
        assert all(torch.equal(G.synthesis(ws, noise_mode=mode), img) for mode in ("const", "random", "none"))
        # W+ is not W: changing one layer's w changes the image
        other = ws.clone()
        other[:, 3] += 1
        assert not torch.allclose(G.synthesis(other), img)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 6, 8\]"):
        G.synthesis(torch.zeros(1, 5, 8))


@pytest.mark.parametrize("config", ["t", "r"])
def test_w_plus_gradients_equal_finite_differences(tmp_path, config):
    G, _ = load(tmp_path, SMALL[config])
    G = G.double()
    gen = torch.Generator().manual_seed(1)
    ws = torch.randn(1, G.num_ws, G.w_dim, generator=gen, dtype=torch.float64)
    probe = torch.randn(1, 3, 16, 16, generator=gen, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (G.synthesis(x) * probe).sum()

    wvar = ws.clone().requires_grad_(True)
    loss(wvar).backward()
    grad = wvar.grad
    assert bool((grad.abs().sum(dim=(0, 2)) > 0).all())  # every w of W+ steers the image
    h = 1e-6
    with torch.no_grad():
        for _ in range(4):
            v = torch.randn(ws.shape, generator=gen, dtype=torch.float64)
            numeric = (loss(ws + h * v) - loss(ws - h * v)) / (2 * h)
            assert float((grad * v).sum()) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)
        for i in (0, G.num_ws - 1):  # the input's w and the ToRGB's w, coordinate by coordinate
            v = torch.zeros_like(ws)
            v[0, i, 2] = 1
            numeric = (loss(ws + h * v) - loss(ws - h * v)) / (2 * h)
            assert float(grad[0, i, 2]) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)


# ---------------------------------------------------------------------------------------------- config


def test_config_checks_and_init_kwargs_rebuild():
    with pytest.raises(ConfigError, match="unsupported synthesis_kwargs: architecture"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, synthesis_kwargs={"architecture": "skip"})
    with pytest.raises(ConfigError, match="img_resolution must be a power of two"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=24)
    with pytest.raises(ConfigError, match="num_critical .* must be smaller than num_layers"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, synthesis_kwargs={"num_layers": 2})
    with pytest.raises(ConfigError, match="use_radial_filters must be true or false"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, synthesis_kwargs={"use_radial_filters": 1})
    with pytest.raises(ConfigError, match="unsupported mapping_kwargs: activation"):
        Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=16, mapping_kwargs={"activation": "relu"})
    with pytest.raises(ConfigError, match="config must be one of t, r"):
        nvidia_synthesis_kwargs("s")
    kwargs = {"z_dim": 4, "c_dim": 2, "w_dim": 6, "img_resolution": 16, "img_channels": 1,
              "mapping_kwargs": {"num_layers": 3},
              "synthesis_kwargs": {**nvidia_synthesis_kwargs("r", 128, 8), "num_layers": 5, "conv_clamp": None,
                                   "magnitude_ema_beta": 0.99, "num_fp16_res": 0}}
    G = Generator(**kwargs)
    assert G.init_kwargs == kwargs and G.num_ws == 7 and G.mapping.num_layers == 3
    again = Generator(**G.init_kwargs)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
    assert G.synthesis.L0_36_16.weight.shape == (16, 16, 1, 1)
    assert G(torch.randn(2, 4), torch.eye(2)).shape == (2, 1, 16, 16)
