"""Our own StyleGAN2 generator, numerically equal to NVIDIA's StyleGAN2-ADA PyTorch release.

Written from the maths in ``shared/notes/stylegan2-format.md`` so that NVIDIA's ``G_ema``
weights load with ``load_state_dict(strict=True)``: every parameter and buffer has the official
name, shape and order (``resample_filter`` buffers included, although they are constants).

What is reproduced, and why it matters for equality with the official outputs:

* mapping: normalised z (and label embedding when ``c_dim > 0``), fully connected layers with
  equalised learning rate (the ``lr_multiplier`` scales both weight gain and bias), leaky ReLU
  times sqrt(2), broadcast to ``num_ws`` copies, truncation towards ``w_avg`` (``lerp``) on all
  or on the first ``truncation_cutoff`` ws;
* synthesis ("skip" architecture): modulated and demodulated 3x3 convolutions computed as one
  grouped convolution per batch; up-sampling convolutions as a stride-2 transposed convolution
  of the *unflipped* kernel followed by the FIR filter [1,3,3,1] (padding 1, gain 4); noise added
  after demodulation and before the bias; then bias, activation, gain, clamp in that order;
  ToRGB styles scaled by 1/sqrt(C_in), no demodulation; the image is up-sampled with the same
  filter (padding 2,1) and summed over blocks; the ToRGB of a block shares its w with the first
  convolution of the next block.

Precision: everything is computed in float32. NVIDIA's ``num_fp16_res`` runs the highest
resolutions in float16 on CUDA only to save time and memory; demodulation cancels the rescaling
that fp16 needs, so float32 is the reference result and the option is accepted and ignored.
The code only uses device-agnostic tensor ops, so it runs unchanged on CUDA.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet.errors import ConfigError

NOISE_MODES = ("const", "random", "none")
DEFAULT_FILTER = (1, 3, 3, 1)

_SQRT2 = math.sqrt(2)
#: NVIDIA's activation functions and their default gains (``bias_act.activation_funcs``).
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, _SQRT2),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), _SQRT2),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda x: torch.sigmoid(x) * x, _SQRT2),
}

_MAPPING_DEFAULTS: dict[str, Any] = {"num_layers": 8, "embed_features": None, "layer_features": None,
                                     "activation": "lrelu", "lr_multiplier": 0.01, "w_avg_beta": 0.995}
_SYNTHESIS_DEFAULTS: dict[str, Any] = {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0,
                                       "conv_clamp": None, "architecture": "skip",
                                       "resample_filter": list(DEFAULT_FILTER), "use_noise": True,
                                       "activation": "lrelu"}
#: Accepted for compatibility with NVIDIA's kwargs; they only change speed or memory layout on CUDA.
_SPEED_ONLY = ("num_fp16_res", "fp16_channels_last", "fused_modconv_default")


# ---------------------------------------------------------------------------------------------- maths


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale each row to unit root-mean-square (the mapping's input normalisation)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def bias_act(x: Tensor, bias: Tensor | None, activation: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> Tensor:
    """``clamp(act(x + bias) * gain)`` with the bias broadcast over dim 1; gain defaults to the activation's."""
    func, default_gain = ACTIVATIONS[activation]
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    x = func(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(taps: Sequence[Any]) -> Tensor:
    """NVIDIA's FIR filter set-up: fewer than 8 1-D taps become their 2-D outer product; normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def filter_size(f: Tensor) -> tuple[int, int]:
    """(width, height) of a 1-D (separable) or 2-D filter."""
    return (int(f.shape[-1]), int(f.shape[0]))


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Zero-insert up-sample by ``up``, pad (x0, x1, y0, y1; negative crops), convolve each channel with ``f * gain``.

    A 2-D filter is scaled by ``gain``, a 1-D (separable) one by ``sqrt(gain)`` per axis, so both
    change the signal by ``gain`` overall. ``f`` is flipped first: a true convolution.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """FIR up-sampling to exactly ``up`` times the size (the skip image path; pad 2,1 for 4 taps, gain up^2)."""
    fw, fh = filter_size(f)
    padding = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=padding, gain=up * up)


def up_conv_padding(fw: int, kw: int, padding: int, up: int = 2) -> tuple[int, int, int]:
    """For one axis of an up-sampling convolution: (transposed-conv padding, FIR pad before, FIR pad after).

    The padding is relative to the up-sampled image; a negative FIR pad crops. For the 4-tap filter,
    3x3 kernel and padding 1: (0, 1, 1).
    """
    p0 = padding + (fw + up - 1) // 2 - (kw - 1)
    p1 = padding + (fw - up) // 2 - (kw - up)
    pt = max(min(-p0, -p1), 0)
    return pt, p0 + pt, p1 + pt


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool = True, up: int = 1,
                     padding: int = 0, resample_filter: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
    """Per-sample modulated (and demodulated) convolution as one grouped convolution over the batch.

    ``x`` [N, I, H, W], ``weight`` [O, I, kh, kw], ``styles`` [N, I]. With ``up == 2`` the kernel
    is applied by a stride-2 transposed convolution (no flip) and then low-pass filtered with
    ``resample_filter`` (gain 4). ``noise`` (broadcastable to the output) is added last.
    """
    n, in_ch, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    wgt = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)
    if demodulate:
        dcoefs = (wgt.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        wgt = wgt * dcoefs.reshape(n, out_ch, 1, 1, 1)
    x = x.reshape(1, n * in_ch, h, w)
    if up == 1:
        x = F.conv2d(x, wgt.reshape(n * out_ch, in_ch, kh, kw), padding=padding, groups=n)
    else:
        if resample_filter is None:
            raise ValueError("an up-sampling convolution needs a resample_filter")
        fw, fh = filter_size(resample_filter)
        ptx, px0, px1 = up_conv_padding(fw, kw, padding, up)
        pty, py0, py1 = up_conv_padding(fh, kh, padding, up)
        wt = wgt.transpose(1, 2).reshape(n * in_ch, out_ch, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=up, padding=[pty, ptx], groups=n)
        x = upfirdn2d(x, resample_filter, padding=(px0, px1, py0, py1), gain=up * up)
    x = x.reshape(n, out_ch, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


# ---------------------------------------------------------------------------------------------- layers


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: weight x lr/sqrt(in), bias x lr, then activation."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)


class MappingNetwork(nn.Module):
    """z (and label c) -> w broadcast to ``num_ws`` copies, with optional truncation towards ``w_avg``.

    ``w_avg`` is a constant buffer here: this package never trains, so NVIDIA's moving-average
    update in training mode (``w_avg_beta``) is not performed; the value is kept for the config.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor | None, c: Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None) -> Tensor:
        parts = []
        if self.z_dim > 0:
            _check_shape(z, [None, self.z_dim], "z")
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            _check_shape(c, [None, self.c_dim], "c")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """``w_avg + psi (ws - w_avg)`` on every w, or on the first ``cutoff`` ones ([N, num_ws, w_dim])."""
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    return torch.cat([w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally up-sampling x2) + noise + bias + activation (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[Any] = DEFAULT_FILTER, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation][1]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const") -> Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, noise=noise)
        return bias_act(x, self.bias.to(x.dtype), self.activation, gain=self.act_gain, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels: styles x 1/sqrt(C_in), no demodulation, + bias (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 up x2) -> conv1 -> ToRGB added to the up-sampled image (skip)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 architecture: str = "skip", resample_filter: Sequence[Any] = DEFAULT_FILTER,
                 conv_clamp: float | None = None, **layer_kwargs: Any) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "const"
                ) -> tuple[Tensor, Tensor]:
        """``ws`` [N, num_conv + 1, w_dim]: one w per convolution, the last for the ToRGB."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv]).to(torch.float32)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W or W+ -> image [N, img_channels, R, R] (nominal range [-1, 1]), blocks at 4, 8, ..., R."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, **block_kwargs: Any) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        self.w_index: list[int] = []  # first w of each block; its ToRGB w is also the next block's conv0 w
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                   **block_kwargs)
            setattr(self, f"b{res}", block)
            self.w_index.append(self.num_ws)
            self.num_ws += block.num_conv
        self.num_ws += 1

    def forward(self, ws: Tensor, noise_mode: str = "const", force_fp32: bool = True) -> Tensor:
        """``ws`` is W [N, w_dim] (broadcast to every layer) or W+ [N, num_ws, w_dim].

        ``noise_mode``: "const" (the ``noise_const`` buffers), "random" (fresh noise) or "none".
        Note NVIDIA's default is "random"; ours is "const" so renders are reproducible.
        ``force_fp32`` is accepted for calls written for NVIDIA's generator: we always compute in fp32.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim == 2:
            _check_shape(ws, [None, self.w_dim], "ws")
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        _check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        ws = ws.to(torch.float32)
        x = img = None
        for res, start in zip(self.block_resolutions, self.w_index):
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, start: start + block.num_conv + 1], noise_mode)
        return img


class Generator(nn.Module):
    """NVIDIA's StyleGAN2 generator: ``G(z, c)``, ``G.mapping(z, c)``, ``G.synthesis(ws)``.

    ``mapping_kwargs`` / ``synthesis_kwargs`` take NVIDIA's names (including the full set found in
    pickles converted from TensorFlow); anything unsupported raises :class:`ConfigError`.
    ``init_kwargs`` rebuilds an identical (untrained) network: ``Generator(**G.init_kwargs)``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int = 3,
                 mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        mapping_kwargs, synthesis_kwargs = check_config(z_dim, c_dim, w_dim, img_resolution, img_channels,
                                                        mapping_kwargs or {}, synthesis_kwargs or {})
        self.init_kwargs: dict[str, Any] = {
            "z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": img_resolution,
            "img_channels": img_channels, "mapping_kwargs": mapping_kwargs, "synthesis_kwargs": synthesis_kwargs}
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        block_kwargs = {k: copy.deepcopy(v) for k, v in synthesis_kwargs.items() if k not in _SPEED_ONLY}
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **block_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z: Tensor, c: Tensor | None, truncation_psi: float = 1, truncation_cutoff: int | None = None,
                noise_mode: str = "const", force_fp32: bool = True) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)


def untrained_stylegan2(size: str = "tiny", resolution: int = 256) -> Generator:
    """A randomly initialised generator for offline runs: ``tiny`` (64², w_dim 32, 2 mapping layers) or the
    paper256 / config-F widths at ``resolution``; the caller seeds the RNG. Noise strengths are set to 0.1
    (NVIDIA initialises them to 0, which would make the noise inputs, and their handling, invisible)."""
    if size == "tiny":
        G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, mapping_kwargs={"num_layers": 2},
                      synthesis_kwargs={"channel_base": 1024, "channel_max": 32})
    elif size == "full":
        base = 16384 if resolution <= 256 else 32768
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution,
                      mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": base, "channel_max": 512})
    else:
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G


# ---------------------------------------------------------------------------------------------- config


def check_config(z_dim: Any, c_dim: Any, w_dim: Any, img_resolution: Any, img_channels: Any,
                 mapping_kwargs: dict[str, Any], synthesis_kwargs: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a generator config; return plain copies of the kwargs (lists, not tuples), or raise ConfigError."""
    for name, value, low in (("z_dim", z_dim, 0), ("c_dim", c_dim, 0), ("w_dim", w_dim, 1),
                             ("img_channels", img_channels, 1), ("img_resolution", img_resolution, 4)):
        _check_int(name, value, low)
    if img_resolution & (img_resolution - 1):
        raise ConfigError(f"img_resolution must be 4 x 2^k, got {img_resolution}")
    if z_dim == 0 and c_dim == 0:
        raise ConfigError("a generator needs z_dim > 0 or c_dim > 0")
    mapping = _known("mapping_kwargs", mapping_kwargs, _MAPPING_DEFAULTS)
    synthesis = _known("synthesis_kwargs", synthesis_kwargs, {**_SYNTHESIS_DEFAULTS, "fp16_channels_last": False,
                                                               "fused_modconv_default": True})
    _check_int("mapping_kwargs.num_layers", mapping.get("num_layers", 8), 1)
    for key in ("embed_features", "layer_features"):
        if mapping.get(key) is not None:
            _check_int(f"mapping_kwargs.{key}", mapping[key], 1)
    for where, kwargs in (("mapping_kwargs", mapping), ("synthesis_kwargs", synthesis)):
        if kwargs.get("activation", "lrelu") not in ACTIVATIONS:
            raise ConfigError(f"{where}.activation {kwargs['activation']!r} is not one of {sorted(ACTIVATIONS)}")
    lr = mapping.get("lr_multiplier", 0.01)
    if not _is_number(lr) or lr <= 0:
        raise ConfigError(f"mapping_kwargs.lr_multiplier must be a positive number, got {lr!r}")
    if "w_avg_beta" in mapping and not _is_number(mapping["w_avg_beta"]):
        raise ConfigError("mapping_kwargs.w_avg_beta=None (a network without a w_avg buffer) is not supported")
    _check_int("synthesis_kwargs.channel_base", synthesis.get("channel_base", 32768), 1)
    _check_int("synthesis_kwargs.channel_max", synthesis.get("channel_max", 512), 1)
    if synthesis.get("channel_base", 32768) < img_resolution:
        raise ConfigError(f"synthesis_kwargs.channel_base must be >= img_resolution ({img_resolution}) so that every "
                          f"resolution has at least one channel")
    if synthesis.get("architecture", "skip") != "skip":
        raise ConfigError(f"only the 'skip' synthesis architecture (NVIDIA's default for G) is supported, "
                          f"got {synthesis['architecture']!r}")
    clamp = synthesis.get("conv_clamp")
    if clamp is not None and (not _is_number(clamp) or clamp < 0):
        raise ConfigError(f"synthesis_kwargs.conv_clamp must be None or a non-negative number, got {clamp!r}")
    if not isinstance(synthesis.get("use_noise", True), bool):
        raise ConfigError(f"synthesis_kwargs.use_noise must be true or false, got {synthesis['use_noise']!r}")
    if "resample_filter" in synthesis:
        synthesis["resample_filter"] = _check_filter(synthesis["resample_filter"])
    return mapping, synthesis


def _known(where: str, kwargs: Any, allowed: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where} must be a dict, got {type(kwargs).__name__}")
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(f"unsupported {where}: {', '.join(map(str, unknown))} (supported: {', '.join(allowed)})")
    return copy.deepcopy(dict(kwargs))


def _check_filter(taps: Any) -> list[Any]:
    try:
        f = torch.as_tensor(taps, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"synthesis_kwargs.resample_filter must be a list of numbers, got {taps!r}") from None
    if f.ndim > 2 or f.numel() == 0 or not bool(torch.isfinite(f).all()) or float(f.sum()) == 0:
        raise ConfigError(f"synthesis_kwargs.resample_filter must be 1-D or 2-D taps with a non-zero sum, got {taps!r}")
    return f.tolist() if f.ndim else [f.item()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_shape(x: Tensor | None, shape: list[int | None], name: str) -> None:
    if x is None or x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
        got = None if x is None else list(x.shape)
        raise ValueError(f"{name} must have shape {want}, got {got}")
