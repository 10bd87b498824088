"""Our StyleGAN2 generator behind the engine's :class:`~stylepuppet.generators.interface.LatentGenerator`.

Two search spaces: ``w`` (one 512-vector broadcast to every layer: ``num_ws = 1``, images stay
what the generator can produce) and ``w+`` (one vector per layer: ``num_ws = G.num_ws``, more
expressive, can leave the generator's manifold). The noise inputs are the generator's own
``noise_const`` buffers, rendered with ``noise_mode="const"``, so optimising or freezing them is
optimising or freezing exactly what every render uses. Our StyleGAN3 generator has the same call
shapes and no noise inputs, so it is seen through this class unchanged (no noise buffers to freeze).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stylepuppet.generators import stylegan3
from stylepuppet.generators.latent_stats import latent_stats
from stylepuppet.generators.stylegan2 import Generator

SPACES = ("w", "w+")


class StyleGAN2Latents:
    """LatentGenerator over ``G.synthesis`` (latents [N, num_ws, w_dim], see the module docstring).

    ``stats`` is the result of :func:`stylepuppet.generators.latent_stats.latent_stats` (computed on first
    use when not given): its ``w_std`` is the exploration-noise scale, and its sampled mean replaces
    ``mapping.w_avg`` when that buffer was never trained (all zeros, as in a randomly initialised net).
    ``ffhq_aligned``: NVIDIA's face networks (FFHQ, MetFaces) draw faces framed by FFHQ's alignment, so a look
    image is aligned that way for them (:mod:`stylepuppet.animation.look`).
    """

    supports_wplus = True
    ffhq_aligned = True

    def __init__(self, G: Generator | stylegan3.Generator, space: str = "w+", stats: Any = None) -> None:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        self.G = G.eval().requires_grad_(False)
        self.space = space
        self.num_ws = int(G.num_ws) if space == "w+" else 1
        self.latent_dim = int(G.w_dim)
        self.img_resolution = int(G.img_resolution)
        self._stats = stats

    @property
    def stats(self) -> Any:
        if self._stats is None:
            self._stats = latent_stats(self.G)
        return self._stats

    def mean_latent(self) -> Tensor:
        """``mapping.w_avg`` [w_dim] (the sampled mean if the buffer is all zeros, i.e. untrained)."""
        w_avg = self.G.mapping.w_avg.detach()
        if bool(torch.all(w_avg == 0)):
            return torch.as_tensor(self.stats.w_mean, dtype=torch.float32).reshape(-1).to(w_avg.device)
        return w_avg.clone()

    def candidate_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Mapped random faces (z from ``generator`` on the CPU, truncation 1) [n, num_ws, w_dim]."""
        device = self.G.mapping.w_avg.device
        z = torch.randn(n, int(self.G.z_dim), generator=generator).to(device)
        c = torch.zeros(n, int(self.G.c_dim), device=device)
        with torch.no_grad():
            w = self.G.mapping(z, c, truncation_psi=1)[:, :1]
        return w.expand(-1, self.num_ws, -1).clone()

    def latent_std(self) -> float:
        """NVIDIA's projector's w_std: root of the summed per-coordinate variance of mapped samples."""
        return float(self.stats.w_std)

    def render(self, latents: Tensor, noise_mode: str = "const") -> Tensor:
        """Images [N, 3, R, R] in about [-1, 1]; a W latent is broadcast to every layer."""
        if latents.ndim != 3 or latents.shape[1:] != (self.num_ws, self.latent_dim):
            raise ValueError(f"latents must be [N, {self.num_ws}, {self.latent_dim}] in {self.space} space, "
                             f"got {tuple(latents.shape)}")
        ws = latents.expand(-1, self.G.num_ws, -1) if self.num_ws == 1 else latents
        return self.G.synthesis(ws, noise_mode=noise_mode)

    def noise_buffers(self) -> dict[str, Tensor]:
        """The live ``synthesis.b{r}.conv{0,1}.noise_const`` buffers, by their state-dict names."""
        return {name: buf for name, buf in self.G.named_buffers() if name.endswith(".noise_const")}

    def constrain(self, latents: Tensor) -> Tensor:
        """Identity: W and W+ are unconstrained."""
        return latents
