"""Our own StyleGAN3 generator (configs T and R), numerically equal to NVIDIA's stylegan3 release.

Written from the formulas of Karras et al. 2021, "Alias-Free Generative Adversarial Networks", as
NVIDIA's PyTorch release computes them, so that the ``G_ema`` of its network pickles loads with
``load_state_dict(strict=True)``: every parameter and buffer has the official name, shape and order.

What is reproduced, and why it matters for equality with the official outputs:

* mapping: StyleGAN2's (``MappingNetwork`` of :mod:`stylegan2` with the stylegan3 defaults: 2 layers,
  ``w_avg_beta`` 0.998); ``num_ws = num_layers + 2``;
* the per-layer schedule: cut-offs and minimum stop-bands grow geometrically from the first layer to
  the last non-critical one, sampling rates are the next power of two of twice the stop-band (capped
  at the image size), transition half-widths fill the rest of the band; layers are ``margin_size``
  pixels larger than their sampling rate on every side except the last two;
* the input: Fourier features whose frequencies and phases go through the rotation and translation
  predicted from the first w and then the user's ``transform`` buffer; frequencies that the transform
  pushes out of band fade out linearly;
* every other layer: a modulated convolution (weights and styles pre-normalised, then demodulated;
  the ToRGB layer scales its styles by 1/sqrt(C_in) instead), the input divided by the square root of
  the magnitude EMA, then the filtered leaky ReLU: bias, up-sampling by zero insertion and a Kaiser
  low-pass filter, leaky ReLU times sqrt(2), clamp, low-pass again and keep every ``down``-th pixel;
  the R config uses 1x1 convolutions and radially symmetric (jinc) down-sampling filters;
* the output is the ToRGB result times ``output_scale`` (0.25).

How it is computed differs from NVIDIA's reference path where that saves time, never in value
(equal to float rounding): the filtered leaky ReLU never multiplies the inserted zeros or computes
the discarded pixels (transposed and strided depthwise convolutions), the activation keeps one
tensor for the backward pass, the modulation scales the input instead of a per-sample weight (so a
backward pass to the latents needs no weight gradient), and the layers run in channels-last memory
layout (about twice as fast for the depthwise filters on CPU). Everything is float32 (NVIDIA's
``num_fp16_res`` only matters on CUDA) and uses device-agnostic tensor ops, so the module runs
unchanged on CUDA. There are no noise inputs: ``noise_mode`` is accepted for the shared call shape
and ignored.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet.errors import ConfigError
from stylepuppet.generators.stylegan2 import (
    NOISE_MODES,
    FullyConnectedLayer,
    MappingNetwork,
    _check_int,
    _check_shape,
    _is_number,
    _known,
)

_MAPPING_DEFAULTS: dict[str, Any] = {"num_layers": 2, "lr_multiplier": 0.01, "w_avg_beta": 0.998}
_SYNTHESIS_DEFAULTS: dict[str, Any] = {
    "channel_base": 32768, "channel_max": 512, "num_layers": 14, "num_critical": 2, "first_cutoff": 2,
    "first_stopband": 2 ** 2.1, "last_stopband_rel": 2 ** 0.3, "margin_size": 10, "output_scale": 0.25,
    "num_fp16_res": 4,
    # per layer
    "conv_kernel": 3, "filter_size": 6, "lrelu_upsampling": 2, "use_radial_filters": False, "conv_clamp": 256,
    "magnitude_ema_beta": 0.999}
#: Accepted for compatibility with NVIDIA's kwargs: precision on CUDA, and training-time averages.
_NOT_USED = ("num_fp16_res", "magnitude_ema_beta")

#: Attributes NVIDIA pickles with its modules that ours carry too, under the same names and in the same
#: (plain) units: a loader compares them, so a variant we would compute differently is refused.
PICKLED_ATTRIBUTES = (
    "z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "img_channels", "num_layers", "num_critical",
    "margin_size", "output_scale", "layer_names", "activation", "weight_gain", "bias_gain",
    "channels", "size", "sampling_rate", "bandwidth",
    "is_torgb", "is_critically_sampled", "in_channels", "out_channels", "in_size", "out_size", "in_sampling_rate",
    "out_sampling_rate", "tmp_sampling_rate", "in_cutoff", "out_cutoff", "in_half_width", "out_half_width",
    "conv_kernel", "conv_clamp", "up_factor", "down_factor", "up_taps", "down_taps", "down_radial", "padding")

#: NVIDIA's two StyleGAN3 configs as its train.py sets them on top of ``channel_base``/``channel_max``.
CONFIGS = ("t", "r")


def nvidia_synthesis_kwargs(config: str, channel_base: int = 32768, channel_max: int = 512) -> dict[str, Any]:
    """``synthesis_kwargs`` of NVIDIA's config T or R: R doubles the channels, uses 1x1 convs and radial filters."""
    if config not in CONFIGS:
        raise ConfigError(f"StyleGAN3 config must be one of {', '.join(CONFIGS)}, got {config!r}")
    if config == "t":
        return {"channel_base": channel_base, "channel_max": channel_max}
    return {"channel_base": 2 * channel_base, "channel_max": 2 * channel_max, "conv_kernel": 1,
            "use_radial_filters": True}


# ---------------------------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Band:
    """One point of the schedule: the signal a synthesis layer outputs (the Fourier input outputs band 0,
    which layer 0 takes in and outputs again)."""

    channels: int
    size: int
    sampling_rate: int
    cutoff: float
    half_width: float


def band_schedule(img_resolution: int, img_channels: int, channel_base: int, channel_max: int, num_layers: int,
                  num_critical: int, first_cutoff: float, first_stopband: float, last_stopband_rel: float,
                  margin_size: int) -> list[Band]:
    """The ``num_layers + 1`` bands of the synthesis layers; the input layer outputs the first one.

    Cut-off f_c and minimum stop-band f_t go geometrically from the first layer to layer
    ``num_layers - num_critical`` and stay there; the sampling rate is the power of two at or above
    2 f_t (at most the image size), the half-width is max(f_t, s/2) - f_c. Computed in float64 with
    the same operations as NVIDIA, so that rounding lands on the same powers of two and channel counts.
    """
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return [Band(int(channels[i]), int(sizes[i]), int(rates[i]), float(cutoffs[i]), float(half_widths[i]))
            for i in range(num_layers + 1)]


# ---------------------------------------------------------------------------------------------- filters


def kaiser_attenuation(numtaps: int, width: float) -> float:
    """Stop-band attenuation (dB) of a Kaiser-window FIR with ``numtaps`` taps and transition ``width``
    (a fraction of the Nyquist frequency): Kaiser's empirical formula."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(attenuation: float) -> float:
    """Kaiser window shape parameter that reaches ``attenuation`` dB (Kaiser's empirical formula)."""
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Separable low-pass taps (float64): a sinc at ``cutoff`` under a Kaiser window for ``width``, unit DC gain.

    The same design as ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``.
    """
    nyquist = fs / 2
    beta = kaiser_beta(kaiser_attenuation(numtaps, width / nyquist))
    offsets = np.arange(numtaps) - (numtaps - 1) / 2
    taps = (cutoff / nyquist) * np.sinc((cutoff / nyquist) * offsets) * np.kaiser(numtaps, beta)
    return taps / taps.sum()


def radial_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Radially symmetric 2-D low-pass taps (float64): a jinc at ``cutoff`` under a separable Kaiser window.

    jinc(r) = J1(2 pi f_c r) / (pi r) is the ideal circular low-pass in 2-D; the window is the outer
    product of the 1-D Kaiser window that the same transition width gives; unit DC gain. ``numtaps``
    must be even (the centre falls between taps, where r > 0).
    """
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    taps = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    window = np.kaiser(numtaps, kaiser_beta(kaiser_attenuation(numtaps, width / (fs / 2))))
    taps = taps * np.outer(window, window)
    return taps / taps.sum()


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
                          ) -> Tensor | None:
    """The float32 filter buffer of a layer: None for a single tap (identity), else 1-D or (radial) 2-D taps."""
    if numtaps == 1:
        return None
    taps = radial_lowpass_filter(numtaps, cutoff, width, fs) if radial else lowpass_filter(numtaps, cutoff, width, fs)
    return torch.as_tensor(taps, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------- resampling


def _depthwise(f: Tensor, channels: int, axis: int) -> Tensor:
    """A depthwise conv weight [C, 1, kh, kw] holding the 1-D taps ``f`` along ``axis`` (-1 width, -2 height)."""
    shape = [1, 1, 1, f.numel()] if axis == -1 else [1, 1, f.numel(), 1]
    return f.reshape(shape).expand(channels, -1, -1, -1)


def upsample_fir(x: Tensor, f: Tensor | None, up: int, pad0: int, pad1: int) -> Tensor:
    """Insert ``up - 1`` zeros after each pixel, pad (pad0 before, pad1 after, both axes; negative crops),
    and convolve with ``f`` scaled to gain ``up`` per axis; ``f`` is 1-D (separable) or 2-D.

    The zero insertion and filter are one transposed convolution (no multiplications by the inserted
    zeros) whose "full" output starts ``taps - 1 - pad0`` pixels before the wanted window. When the
    window is centred in it (NVIDIA's layers pad that way), the transposed convolution's own padding
    computes just the window; otherwise the full output is cut or padded.
    """
    channels, width = x.shape[1], x.shape[-1]
    if f is None:
        if up != 1:
            raise ValueError("up-sampling needs a filter")
        return _window(x, -pad0, width + pad0 + pad1)
    taps = f.shape[-1]
    start, length = taps - 1 - pad0, width * up + pad0 + pad1 - taps + 1
    full = (width - 1) * up + taps
    crop = start if start >= 0 and full - 2 * start == length else 0
    f = f.to(x.dtype)
    if f.ndim == 1:
        x = F.conv_transpose2d(x, _depthwise(f * up, channels, -1), stride=(1, up), padding=(0, crop), groups=channels)
        x = F.conv_transpose2d(x, _depthwise(f * up, channels, -2), stride=(up, 1), padding=(crop, 0), groups=channels)
    else:
        x = F.conv_transpose2d(x, (f * up * up)[None, None].expand(channels, -1, -1, -1), stride=up, padding=crop,
                               groups=channels)
    return _window(x, start - crop, length)


def _window(x: Tensor, start: int, length: int) -> Tensor:
    """Pixels start .. start + length - 1 on both spatial axes, zeros outside ``x``; a view when inside."""
    size = x.shape[-1]
    if start >= 0 and start + length <= size:
        return x[:, :, start: start + length, start: start + length]
    return F.pad(x, [-start, start + length - size] * 2)


def downsample_fir(x: Tensor, f: Tensor | None, down: int, gain: float = 1.0) -> Tensor:
    """Convolve (valid) with ``f`` (1-D separable or 2-D) times ``gain`` and keep every ``down``-th pixel,
    computing only the kept ones (strided convolution)."""
    if f is None:
        x = x[:, :, ::down, ::down]
        return x * gain if gain != 1 else x
    channels = x.shape[1]
    f = f.to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 1:
        x = F.conv2d(x, _depthwise(f * gain, channels, -1), stride=(1, down), groups=channels)
        return F.conv2d(x, _depthwise(f, channels, -2), stride=(down, 1), groups=channels)
    return F.conv2d(x, (f * gain)[None, None].expand(channels, -1, -1, -1), stride=down, groups=channels)


def filtered_lrelu(x: Tensor, fu: Tensor | None, fd: Tensor | None, bias: Tensor, up: int, down: int,
                   padding: tuple[int, int], gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: float | None = None) -> Tensor:
    """Bias, up-sample (``upsample_fir``), leaky ReLU times ``gain``, clamp, down-sample (``downsample_fir``).

    The activation runs at the higher, temporary sampling rate so that the harmonics it creates are
    removed by the down-sampling filter instead of aliasing. ``padding`` (before, after) is relative to
    the up-sampled image. The ``gain`` (> 0) is applied through the down-sampling filter instead
    (clamping at clamp / gain first): the same numbers, one pass less over the up-sampled image.
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = upsample_fir(x, fu, up, *padding)
    if slope != 1:
        x = _LeakyReLUClamp.apply(x, slope, None if clamp is None else clamp / gain)
    elif clamp is not None:
        x = x.clamp(-clamp / gain, clamp / gain)
    return downsample_fir(x, fd, down, gain)


class _LeakyReLUClamp(torch.autograd.Function):
    """``clamp(leaky_relu(x, slope))`` in place on one new tensor, which is all the backward pass keeps (the
    signs and the clamped places are read off it): at the up-sampled rate this halves the memory a backward
    pass holds, next to two separate ops. An input exactly at +-clamp gets no gradient (torch's clamp would
    pass it): a set of measure zero."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, slope: float, clamp: float | None) -> Tensor:
        y = F.leaky_relu(x, slope)
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(y)
        ctx.slope, ctx.clamp = slope, clamp
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (y,) = ctx.saved_tensors
        if ctx.clamp is not None:
            grad = torch.ops.aten.hardtanh_backward(grad, y, -ctx.clamp, ctx.clamp)
        return torch.ops.aten.leaky_relu_backward(grad, y, ctx.slope, True), None, None


def modulated_conv(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool, padding: int,
                   input_gain: Tensor) -> Tensor:
    """StyleGAN3's modulated convolution ``conv(x, weight * styles * d * input_gain)`` per sample.

    With demodulation, weights (per output channel) and styles (over the whole batch) are first
    scaled to unit RMS (NVIDIA does it to keep float16 in range; in float32 it only moves the
    epsilon), and d = 1/sqrt(sum over inputs and taps of (w s)^2 + 1e-8) per output channel.
    Computed as ``conv(x * styles * input_gain, weight) * d``: the same numbers, but the shared
    weight needs no gradient, so a backward pass to the latents skips the weight gradient that
    the per-sample (grouped) form has to compute.
    """
    n, in_ch = styles.shape
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    x = x * (styles * input_gain).to(x.dtype).reshape(n, in_ch, 1, 1)
    x = F.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        # sum over i and taps of (w_oi s_i)^2 = sum over i of s_i^2 (sum over taps of w_oi^2): one small matmul
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    return x


# ---------------------------------------------------------------------------------------------- layers


class SynthesisInput(nn.Module):
    """Fourier features [N, C, size, size] from the first w: the affine predicts a rotation and translation.

    ``transform`` (3x3, identity by default) is the user's inverse transform of the output image,
    applied after the predicted one: translating it translates the content without changing w.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = [size, size]
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # start as the identity transform: rotation (1, 0), translation (0, 0)
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: Tensor) -> Tensor:
        t = self.affine(w)  # (cos, sin, tx, ty) up to the scale of the rotation part
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        n = w.shape[0]
        rotation = torch.eye(3, device=w.device, dtype=w.dtype).repeat(n, 1, 1)
        rotation[:, 0, 0], rotation[:, 0, 1] = t[:, 0], -t[:, 1]
        rotation[:, 1, 0], rotation[:, 1, 1] = t[:, 1], t[:, 0]
        translation = torch.eye(3, device=w.device, dtype=w.dtype).repeat(n, 1, 1)
        translation[:, 0, 2], translation[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = rotation @ translation @ self.transform.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.unsqueeze(0) @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        coords = (torch.arange(self.size[0], device=w.device, dtype=w.dtype) + 0.5 - self.size[0] / 2) \
            / self.sampling_rate  # pixel centres, in units where the sampling rate is 1 per pixel
        gx, gy = coords.reshape(1, 1, -1, 1), coords.reshape(1, -1, 1, 1)
        x = gx * freqs[:, None, None, :, 0] + gy * freqs[:, None, None, :, 1] + phases[:, None, None, :]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]  # [N, H, W, C]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU from band ``before`` to band ``after`` (or the final ToRGB).

    Attribute names and values follow NVIDIA's layer, so that a pickle's can be cross-checked.
    """

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, before: Band, after: Band,
                 conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256) -> None:
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.in_channels, self.out_channels = before.channels, after.channels
        self.in_size, self.out_size = [before.size] * 2, [after.size] * 2
        self.in_sampling_rate, self.out_sampling_rate = before.sampling_rate, after.sampling_rate
        self.tmp_sampling_rate = max(before.sampling_rate, after.sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = before.cutoff, after.cutoff
        self.in_half_width, self.out_half_width = before.half_width, after.half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.up_factor = _ratio(self.tmp_sampling_rate, before.sampling_rate)
        self.down_factor = _ratio(self.tmp_sampling_rate, after.sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        # padding of the up-sampled image so that the down-sampled result has exactly out_size pixels,
        # with sample positions shifted as in the symmetric interpretation of the pixel grid
        conv_size = before.size + self.conv_kernel - 1
        pad_total = (after.size - 1) * self.down_factor + 1 - conv_size * self.up_factor \
            + self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo] * 2

        self.affine = FullyConnectedLayer(w_dim, self.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.conv_kernel,
                                                self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(self.up_taps, before.cutoff, before.half_width * 2,
                                                                self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(self.down_taps, after.cutoff, after.half_width * 2,
                                                                  self.tmp_sampling_rate, radial=self.down_radial))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
        x = modulated_conv(x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                           input_gain=self.magnitude_ema.rsqrt())
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, self.up_factor, self.down_factor,
                              (self.padding[0], self.padding[1]), gain=1 if self.is_torgb else math.sqrt(2),
                              slope=1 if self.is_torgb else 0.2, clamp=self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """W or W+ -> image [N, img_channels, R, R]: the Fourier input, ``num_layers`` layers and the ToRGB."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, **layer_kwargs: Any) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale = margin_size, output_scale
        self.num_ws = num_layers + 2
        bands = band_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                              first_cutoff, first_stopband, last_stopband_rel, margin_size)
        first = bands[0]
        self.input = SynthesisInput(w_dim, first.channels, first.size, first.sampling_rate, first.cutoff)
        self.layer_names: list[str] = []
        for idx, after in enumerate(bands):
            layer = SynthesisLayer(w_dim, idx == num_layers, idx >= num_layers - num_critical,
                                   bands[max(idx - 1, 0)], after, **layer_kwargs)
            name = f"L{idx}_{after.size}_{after.channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layers(self) -> list[SynthesisLayer]:
        """The synthesis layers in order (the last is the ToRGB)."""
        return [getattr(self, name) for name in self.layer_names]

    def forward(self, ws: Tensor, noise_mode: str = "const", force_fp32: bool = True) -> Tensor:
        """``ws`` is W [N, w_dim] (broadcast to every layer) or W+ [N, num_ws, w_dim]: the input layer
        reads the first w, layer i the (i + 1)-th. ``noise_mode`` and ``force_fp32`` are accepted for the
        call shape StyleGAN2 has; StyleGAN3 has no noise, and we compute in the network's dtype (float32
        as loaded; float64 after ``.double()``, which the gradient tests use)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim == 2:
            _check_shape(ws, [None, self.w_dim], "ws")
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        _check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        ws = ws.to(self.input.weight.dtype)
        x = self.input(ws[:, 0]).contiguous(memory_format=torch.channels_last)  # 2x faster depthwise convs on CPU
        for i, layer in enumerate(self.layers()):
            x = layer(x, ws[:, i + 1])
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.contiguous()


class Generator(nn.Module):
    """NVIDIA's StyleGAN3 generator: ``G(z, c)``, ``G.mapping(z, c)``, ``G.synthesis(ws)``.

    ``mapping_kwargs`` / ``synthesis_kwargs`` take NVIDIA's names (the stylegan3 ``Generator`` takes the
    synthesis ones as top-level kwargs); anything unsupported raises :class:`ConfigError`.
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
        used = {k: copy.deepcopy(v) for k, v in synthesis_kwargs.items() if k not in _NOT_USED}
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **used)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **{**_MAPPING_DEFAULTS, **mapping_kwargs})

    def forward(self, z: Tensor, c: Tensor | None, truncation_psi: float = 1, truncation_cutoff: int | None = None,
                noise_mode: str = "const", force_fp32: bool = True) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)


# ---------------------------------------------------------------------------------------------- config


def check_config(z_dim: Any, c_dim: Any, w_dim: Any, img_resolution: Any, img_channels: Any,
                 mapping_kwargs: dict[str, Any], synthesis_kwargs: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a StyleGAN3 config; return plain copies of the kwargs, or raise ConfigError."""
    for name, value, low in (("z_dim", z_dim, 0), ("c_dim", c_dim, 0), ("w_dim", w_dim, 1),
                             ("img_channels", img_channels, 1), ("img_resolution", img_resolution, 4)):
        _check_int(name, value, low)
    if img_resolution & (img_resolution - 1):
        raise ConfigError(f"img_resolution must be a power of two, got {img_resolution}")
    if z_dim == 0 and c_dim == 0:
        raise ConfigError("a generator needs z_dim > 0 or c_dim > 0")
    mapping = _known("mapping_kwargs", mapping_kwargs, _MAPPING_DEFAULTS)
    synthesis = _known("synthesis_kwargs", synthesis_kwargs, _SYNTHESIS_DEFAULTS)
    merged_mapping = {**_MAPPING_DEFAULTS, **mapping}
    merged = {**_SYNTHESIS_DEFAULTS, **synthesis}
    _check_int("mapping_kwargs.num_layers", merged_mapping["num_layers"], 1)
    for where, key in (("mapping_kwargs", "lr_multiplier"), ("synthesis_kwargs", "first_cutoff"),
                       ("synthesis_kwargs", "first_stopband"), ("synthesis_kwargs", "last_stopband_rel")):
        value = (merged_mapping if where == "mapping_kwargs" else merged)[key]
        if not _is_number(value) or value <= 0:
            raise ConfigError(f"{where}.{key} must be a positive number, got {value!r}")
    if not _is_number(merged_mapping["w_avg_beta"]):
        raise ConfigError("mapping_kwargs.w_avg_beta must be a number")
    for key, low in (("channel_base", 1), ("channel_max", 1), ("num_layers", 1), ("num_critical", 0),
                     ("margin_size", 0), ("conv_kernel", 1), ("filter_size", 1), ("lrelu_upsampling", 1)):
        _check_int(f"synthesis_kwargs.{key}", merged[key], low)
    if merged["num_critical"] >= merged["num_layers"]:
        raise ConfigError(f"synthesis_kwargs.num_critical ({merged['num_critical']}) must be smaller than "
                          f"num_layers ({merged['num_layers']})")
    if not _is_number(merged["output_scale"]):
        raise ConfigError(f"synthesis_kwargs.output_scale must be a number, got {merged['output_scale']!r}")
    if not isinstance(merged["use_radial_filters"], bool):
        raise ConfigError(f"synthesis_kwargs.use_radial_filters must be true or false, "
                          f"got {merged['use_radial_filters']!r}")
    clamp = merged["conv_clamp"]
    if clamp is not None and (not _is_number(clamp) or clamp < 0):
        raise ConfigError(f"synthesis_kwargs.conv_clamp must be None or a non-negative number, got {clamp!r}")
    bands = band_schedule(img_resolution, img_channels, merged["channel_base"], merged["channel_max"],
                          merged["num_layers"], merged["num_critical"], merged["first_cutoff"],
                          merged["first_stopband"], merged["last_stopband_rel"], merged["margin_size"])
    if min(b.channels for b in bands) < 1:
        raise ConfigError("synthesis_kwargs.channel_base is too small: a layer would have no channels")
    return mapping, synthesis


def _ratio(high: int, low: int) -> int:
    factor = high // low
    if factor * low != high:
        raise ConfigError(f"sampling rates {high} and {low} are not in an integer ratio; the config is not supported")
    return factor
