"""A direct, deliberately plain float64 evaluation of StyleGAN3's formulas on a hand-written NVIDIA module tree.

Independent of stylepuppet's generator: it reads the tensors and the per-layer attributes (factors,
padding, sampling rates, ...) that NVIDIA pickles with each module (``nvidia_pickle.sg3_generator``)
and evaluates: the Fourier features pixel by pixel from the transform, zero insertion by index
assignment, explicit zero padding, every convolution and FIR filter as an explicit sum over taps,
the leaky ReLU as a ``where``. Slow, but only ever run on tiny networks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

SQRT2 = math.sqrt(2)


def f64(t: Tensor) -> Tensor:
    return t.detach().to(torch.float64)


def dense(module, x: Tensor) -> Tensor:
    weight, bias = f64(module.params["weight"]), f64(module.params["bias"])
    lr = float(module.attrs["bias_gain"])
    y = x @ (weight * (lr / math.sqrt(weight.shape[1]))).T + bias * lr
    return torch.where(y >= 0, y, 0.2 * y) * SQRT2 if module.attrs["activation"] == "lrelu" else y


def normalize(x: Tensor) -> Tensor:
    return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)


def mapping(G, z: Tensor, c: Tensor | None, psi: float = 1.0, cutoff: int | None = None) -> Tensor:
    m = G.children["mapping"]
    x = normalize(f64(z))
    if "embed" in m.children:
        x = torch.cat([x, normalize(dense(m.children["embed"], f64(c)))], dim=1)
    for i in range(m.attrs["num_layers"]):
        x = dense(m.children[f"fc{i}"], x)
    num_ws = G.attrs["num_ws"]
    ws = x[:, None, :].repeat(1, num_ws, 1)
    avg = f64(m.buffers["w_avg"])
    cut = num_ws if cutoff is None else cutoff
    ws[:, :cut] = avg + psi * (ws[:, :cut] - avg)
    return ws


def fourier_features(inp, w: Tensor) -> Tensor:
    """[N, C, S, S]: channel c at pixel centre p is amp_c sin(2 pi (f_c . (A p + b) + phase_c)), where (A, b) is
    the rotation then translation predicted from w, followed by the transform buffer; mixed by weight/sqrt(C)."""
    t = dense(inp.children["affine"], f64(w))
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    freqs, phases = f64(inp.buffers["freqs"]), f64(inp.buffers["phases"])
    user = f64(inp.buffers["transform"])
    size, rate, band = int(inp.attrs["size"][0]), float(inp.attrs["sampling_rate"]), float(inp.attrs["bandwidth"])
    coords = (torch.arange(size, dtype=torch.float64) + 0.5 - size / 2) / rate
    out = []
    for n in range(w.shape[0]):
        cos, sin, tx, ty = t[n].tolist()
        rotate = torch.tensor([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], dtype=torch.float64)
        translate = torch.tensor([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]], dtype=torch.float64)
        m = rotate @ translate @ user
        f = freqs @ m[:2, :2]  # frequencies seen through the transform
        phase = phases + freqs @ m[:2, 2]
        amp = (1 - (f.norm(dim=1) - band) / (rate / 2 - band)).clamp(0, 1)
        arg = (coords[None, None, :] * f[:, 0, None, None] + coords[None, :, None] * f[:, 1, None, None]
               + phase[:, None, None])
        feats = torch.sin(2 * math.pi * arg) * amp[:, None, None]
        weight = f64(inp.params["weight"]) / math.sqrt(freqs.shape[0])
        out.append(torch.einsum("oc,chw->ohw", weight, feats))
    return torch.stack(out)


def zero_insert(x: Tensor, up: int) -> Tensor:
    """Each sample followed by ``up - 1`` zeros along both spatial axes."""
    out = x.new_zeros(*x.shape[:-2], x.shape[-2] * up, x.shape[-1] * up)
    out[..., ::up, ::up] = x
    return out


def pad(x: Tensor, before: int, after: int) -> Tensor:
    """Zeros around (negative values crop), both spatial axes."""
    h, w = x.shape[-2:]
    out = x.new_zeros(*x.shape[:-2], h + max(before, 0) + max(after, 0), w + max(before, 0) + max(after, 0))
    out[..., max(before, 0): max(before, 0) + h, max(before, 0): max(before, 0) + w] = x
    return out[..., max(-before, 0): out.shape[-2] - max(-after, 0), max(-before, 0): out.shape[-1] - max(-after, 0)]


def convolve(x: Tensor, taps: Tensor) -> Tensor:
    """Valid 2-D convolution (flipped taps) of every channel; 1-D taps act along both axes (separable)."""
    k2 = torch.outer(taps, taps) if taps.ndim == 1 else taps
    kh, kw = k2.shape
    h, w = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
    out = x.new_zeros(*x.shape[:-2], h, w)
    for i in range(kh):
        for j in range(kw):
            out += k2[kh - 1 - i, kw - 1 - j] * x[..., i: i + h, j: j + w]
    return out


def filtered_lrelu(x: Tensor, fu: Tensor | None, fd: Tensor | None, bias: Tensor, up: int, down: int,
                   padding: tuple[int, int], gain: float, slope: float, clamp: float | None) -> Tensor:
    """The four steps in the plainest form: bias; zero insertion, padding, FIR x up^2; lrelu, gain, clamp;
    FIR and keep every ``down``-th pixel."""
    x = x + bias[None, :, None, None]
    x = pad(zero_insert(x, up), *padding)
    if fu is not None:
        x = convolve(x, fu * (up if fu.ndim == 1 else up * up))
    x = torch.where(x >= 0, x, slope * x) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    if fd is not None:
        x = convolve(x, fd)
    return x[..., ::down, ::down]


def modulated_conv(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool, gain: float) -> Tensor:
    """Full (padding k - 1) convolution of each sample with its modulated, demodulated weights; input x gain."""
    k = weight.shape[-1]
    if demodulate:
        weight = weight / weight.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
        styles = styles / styles.square().mean().sqrt()
    out = []
    for n in range(x.shape[0]):
        wn = weight * styles[n][None, :, None, None]
        if demodulate:
            wn = wn / torch.sqrt(wn.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        xp = pad(x[n], k - 1, k - 1)
        h, w = xp.shape[-2] - k + 1, xp.shape[-1] - k + 1
        y = xp.new_zeros(weight.shape[0], h, w)
        for i in range(k):
            for j in range(k):
                y += torch.einsum("oi,ihw->ohw", wn[:, :, i, j], xp[:, i: i + h, j: j + w])
        out.append(y * gain)
    return torch.stack(out)


def layer(module, x: Tensor, w: Tensor) -> Tensor:
    a = module.attrs
    torgb = bool(a["is_torgb"])
    styles = dense(module.children["affine"], f64(w))
    if torgb:
        styles = styles / math.sqrt(a["in_channels"])
    x = modulated_conv(x, f64(module.params["weight"]), styles, not torgb,
                       float(f64(module.buffers["magnitude_ema"]).rsqrt()))
    fu, fd = module.buffers["up_filter"], module.buffers["down_filter"]
    return filtered_lrelu(x, None if fu is None else f64(fu), None if fd is None else f64(fd),
                          f64(module.params["bias"]), a["up_factor"], a["down_factor"], tuple(a["padding"][:2]),
                          1.0 if torgb else SQRT2, 1.0 if torgb else 0.2, a["conv_clamp"])


def synthesis(G, ws: Tensor) -> Tensor:
    s = G.children["synthesis"]
    x = fourier_features(s.children["input"], ws[:, 0])
    for i, name in enumerate(s.attrs["layer_names"]):
        x = layer(s.children[name], x, ws[:, i + 1])
    return x * s.attrs["output_scale"]


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """The radial filter with J1 from its integral form J1(x) = (1/pi) int_0^pi cos(t - x sin t) dt (no scipy)."""
    t = (np.arange(20000) + 0.5) * (np.pi / 20000)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    arg = 2 * cutoff * np.pi * r
    j1 = np.cos(t[None, None, :] - arg[..., None] * np.sin(t[None, None, :])).mean(axis=-1)
    atten = 2.285 * (numtaps - 1) * np.pi * (width / (fs / 2)) + 7.95
    beta = 0.1102 * (atten - 8.7) if atten > 50 else (0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
                                                       if atten > 21 else 0.0)
    n = np.arange(numtaps)
    window = np.i0(beta * np.sqrt(1 - (2 * n / (numtaps - 1) - 1) ** 2)) / np.i0(beta)
    f = j1 / (np.pi * r) * np.outer(window, window)
    return f / f.sum()
