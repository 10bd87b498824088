"""Tiny stand-in networks for the engine's tests: a StyleGAN-like latent generator and a heat-map
landmark net with soft-argmax points, both randomly initialised from a fixed seed (mechanics only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet.landmarks.framing import fan_framing
from stylepuppet.landmarks.scheme import GROUPS

NOISE = 0.05
GAIN = 4


class TinyStyleNet(nn.Module):
    """const 4x4 -> three modulated convs (each upsampling x2, with per-layer noise) -> modulated toRGB, tanh."""

    def __init__(self, dim: int = 8, channels: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.num_layers = 4
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4, generator=g))
        self.affine = nn.Parameter(torch.randn(self.num_layers, dim, channels, generator=g) / dim**0.5)
        self.convs = nn.ParameterList(
            [nn.Parameter(torch.randn(channels, channels, 3, 3, generator=g) / (3 * channels**0.5)) for _ in range(3)])
        self.rgb = nn.Parameter(torch.randn(3, channels, 1, 1, generator=g) / channels**0.5)
        for r in (8, 16, 32):
            self.register_buffer(f"noise{r}", torch.randn(r, r, generator=g))
        self.requires_grad_(False)

    def forward(self, ws: Tensor) -> Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, (conv, r) in enumerate(zip(self.convs, (8, 16, 32))):
            style = 1 + torch.einsum("nd,dc->nc", ws[:, i], self.affine[i])
            x = F.interpolate(x * style[:, :, None, None], scale_factor=2, mode="bilinear", align_corners=False)
            x = F.conv2d(x, conv, padding=1) + NOISE * getattr(self, f"noise{r}")
            x = F.leaky_relu(x, 0.2)
        style = 1 + torch.einsum("nd,dc->nc", ws[:, 3], self.affine[3])
        return torch.tanh(F.conv2d(x * style[:, :, None, None], self.rgb))


class TinyLatents:
    """LatentGenerator stand-in over :class:`TinyStyleNet`: W (num_ws 1, broadcast) or W+ (4 layers)."""

    supports_wplus = True
    img_resolution = 32

    def __init__(self, space: str = "w+", seed: int = 0) -> None:
        self.net = TinyStyleNet(seed=seed)
        self.latent_dim = self.net.dim
        self.num_ws = self.net.num_layers if space == "w+" else 1
        self._mean = torch.randn(self.latent_dim, generator=torch.Generator().manual_seed(seed + 1)) * 0.3

    def mean_latent(self) -> Tensor:
        return self._mean.clone()

    def latent_std(self) -> float:
        return 1.0

    def candidate_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, 1, self.latent_dim, generator=generator) * 0.3 + self._mean
        return z.expand(-1, self.num_ws, -1).clone()

    def render(self, latents: Tensor, noise_mode: str = "const") -> Tensor:
        assert latents.ndim == 3 and latents.shape[1:] == (self.num_ws, self.latent_dim), latents.shape
        return self.net(latents.expand(-1, self.net.num_layers, -1))

    def noise_buffers(self) -> dict[str, Tensor]:
        return {name: buf for name, buf in self.net.named_buffers() if name.startswith("noise")}

    def constrain(self, latents: Tensor) -> Tensor:
        return latents


@dataclass
class Output:
    points: Tensor
    heatmaps: Tensor | None


class TinyLandmarkNet(nn.Module):
    """68 heat maps (8x8) from a 32x32 crop; points by soft-argmax, in crop pixels."""

    input_size = 32
    num_points = 68
    groups: ClassVar[dict[str, np.ndarray]] = {name: np.asarray(idx) for name, idx in GROUPS.items()}

    def __init__(self, seed: int = 0, heatmaps: bool = True) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(16, 68, 1))
        # Each heat map is a Gaussian bump at a fixed anchor plus image-dependent logits, so the points sit
        # near canonical places and move smoothly with the image, as a trained landmark net's do.
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("anchors", 2 + torch.rand(68, 2, generator=g) * 3)
        self.with_heatmaps = heatmaps
        self.requires_grad_(False)

    def framing(self, box: Tensor) -> tuple[Tensor, Tensor]:
        return fan_framing(box)

    def forward(self, crops: Tensor) -> Output:
        heat = self.body(crops * 2 - 1) * GAIN
        n, p, h, w = heat.shape
        ys = torch.arange(h, dtype=crops.dtype)
        xs = torch.arange(w, dtype=crops.dtype)
        dx2 = (xs[None, None, :] - self.anchors[:, 0, None, None]) ** 2
        dy2 = (ys[None, :, None] - self.anchors[:, 1, None, None]) ** 2
        heat = heat - (dx2 + dy2) / (2 * 1.5**2)
        prob = heat.flatten(2).softmax(-1).view(n, p, h, w)
        px = (prob.sum(2) * xs).sum(-1)
        py = (prob.sum(3) * ys).sum(-1)
        points = (torch.stack([px, py], -1) + 0.5) * (self.input_size / h) - 0.5
        return Output(points, prob if self.with_heatmaps else None)


def smooth_path(gen: TinyLatents, frames: int, amplitude: float = 1.2, seed: int = 3) -> Tensor:
    """A smooth latent path [T, 1, dim] in W away from the mean: a sweep along two random directions."""
    g = torch.Generator().manual_seed(seed)
    offset, a, b = torch.randn(3, gen.latent_dim, generator=g)
    t = torch.linspace(0, 1, frames)[:, None]
    path = gen.mean_latent() + amplitude * (offset + torch.sin(3 * t) * a + (1 - torch.cos(3 * t)) * b)
    return path[:, None, :]
