"""A direct, deliberately plain evaluation of StyleGAN2's formulas on a flat NVIDIA state dict.

Independent of stylepuppet's generator: per-sample loops, convolutions as explicit sums over
kernel taps, the up-sampling convolution as zero insertion followed by correlation with the
spatially flipped kernel, and the FIR filter as an explicit 4x4 tap sum. Slow, but only ever
run on tiny networks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SQRT2 = math.sqrt(2)
FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])
FIR2D = torch.outer(FIR, FIR) / 64


def lrelu(x: Tensor) -> Tensor:
    return torch.where(x >= 0, x, 0.2 * x) * SQRT2


def normalize(x: Tensor) -> Tensor:
    return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)


def dense(sd: dict[str, Tensor], name: str, x: Tensor, lr: float = 1.0) -> Tensor:
    weight = sd[f"{name}.weight"] * (lr / math.sqrt(sd[f"{name}.weight"].shape[1]))
    return x @ weight.T + sd[f"{name}.bias"] * lr


def mapping(sd: dict[str, Tensor], z: Tensor, c: Tensor | None, num_layers: int, num_ws: int, psi: float = 1.0,
            cutoff: int | None = None, lr: float = 0.01) -> Tensor:
    x = normalize(z)
    if c is not None and c.shape[1] > 0:
        x = torch.cat([x, normalize(dense(sd, "mapping.embed", c))], dim=1)
    for i in range(num_layers):
        x = lrelu(dense(sd, f"mapping.fc{i}", x, lr))
    ws = x[:, None, :].repeat(1, num_ws, 1)
    avg = sd["mapping.w_avg"]
    cut = num_ws if cutoff is None else cutoff
    ws[:, :cut] = avg + psi * (ws[:, :cut] - avg)
    return ws


def correlate(x: Tensor, kernel: Tensor) -> Tensor:
    """Valid correlation of x [I, H, W] with kernel [O, I, kh, kw] as a sum over taps."""
    _, kh, kw = kernel.shape[1:]
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = torch.zeros(kernel.shape[0], h, w, dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            out += torch.einsum("oi,ihw->ohw", kernel[:, :, a, b], x[:, a:a + h, b:b + w])
    return out


def pad(x: Tensor, left: int, right: int, top: int, bottom: int) -> Tensor:
    out = torch.zeros(x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, dtype=x.dtype)
    out[:, top:top + x.shape[1], left:left + x.shape[2]] = x
    return out


def zero_insert(x: Tensor, trailing: bool) -> Tensor:
    """x[i, j] at (2i, 2j), zeros elsewhere; size 2H (with the trailing zero) or 2H-1."""
    h, w = x.shape[1:]
    out = torch.zeros(x.shape[0], 2 * h - (0 if trailing else 1), 2 * w - (0 if trailing else 1), dtype=x.dtype)
    out[:, ::2, ::2] = x
    return out


def fir(x: Tensor, left: int, right: int, top: int, bottom: int, gain: float) -> Tensor:
    """Pad, then each channel convolved with FIR2D * gain (symmetric, so flipping does not matter)."""
    x = pad(x, left, right, top, bottom)
    f = FIR2D * gain
    h, w = x.shape[1] - 3, x.shape[2] - 3
    out = torch.zeros(x.shape[0], h, w, dtype=x.dtype)
    for a in range(4):
        for b in range(4):
            out += f[a, b] * x[:, a:a + h, b:b + w]
    return out


def modulated_weight(weight: Tensor, style: Tensor, demodulate: bool) -> Tensor:
    w = weight * style[None, :, None, None]
    if demodulate:
        w = w / torch.sqrt((w * w).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return w


def layer(sd: dict[str, Tensor], name: str, x: Tensor, w: Tensor, up: bool, noise: Tensor | None,
          clamp: float | None) -> Tensor:
    """One synthesis layer for one sample: x [I, H, W], w [w_dim]."""
    style = dense(sd, f"{name}.affine", w[None])[0]
    kernel = modulated_weight(sd[f"{name}.weight"], style, demodulate=True)
    if up:  # convolution (flipped kernel) of the zero-inserted input, then the FIR with pad 1, gain 4
        y = correlate(pad(zero_insert(x, trailing=False), 2, 2, 2, 2), kernel.flip([2, 3]))
        y = fir(y, 1, 1, 1, 1, gain=4)
    else:
        y = correlate(pad(x, 1, 1, 1, 1), kernel)
    if noise is not None:
        y = y + noise * sd[f"{name}.noise_strength"]
    y = lrelu(y + sd[f"{name}.bias"][:, None, None])
    return y if clamp is None else y.clamp(-clamp, clamp)


def torgb(sd: dict[str, Tensor], name: str, x: Tensor, w: Tensor, clamp: float | None) -> Tensor:
    style = dense(sd, f"{name}.affine", w[None])[0] / math.sqrt(x.shape[0])
    kernel = modulated_weight(sd[f"{name}.weight"], style, demodulate=False)
    y = correlate(x, kernel) + sd[f"{name}.bias"][:, None, None]
    return y if clamp is None else y.clamp(-clamp, clamp)


def synthesis(sd: dict[str, Tensor], ws: Tensor, resolution: int, clamp: float | None = None,
              noise: str = "const") -> Tensor:
    """Images [N, C, R, R]; noise "const" (the noise_const buffers) or "none"."""
    images = []
    for n in range(ws.shape[0]):
        def noise_of(name: str) -> Tensor | None:
            return sd[f"{name}.noise_const"] if noise == "const" and f"{name}.noise_const" in sd else None

        x = sd["synthesis.b4.const"]
        x = layer(sd, "synthesis.b4.conv1", x, ws[n, 0], False, noise_of("synthesis.b4.conv1"), clamp)
        img = torgb(sd, "synthesis.b4.torgb", x, ws[n, 1], clamp)
        idx = 1
        res = 8
        while res <= resolution:
            b = f"synthesis.b{res}"
            x = layer(sd, f"{b}.conv0", x, ws[n, idx], True, noise_of(f"{b}.conv0"), clamp)
            x = layer(sd, f"{b}.conv1", x, ws[n, idx + 1], False, noise_of(f"{b}.conv1"), clamp)
            img = fir(zero_insert(img, trailing=True), 2, 1, 2, 1, gain=4) + torgb(sd, f"{b}.torgb", x, ws[n, idx + 2],
                                                                                 clamp)
            idx += 2
            res *= 2
        images.append(img)
    return torch.stack(images)


def num_ws(resolution: int) -> int:
    return 2 * int(math.log2(resolution)) - 2
