"""The two faces of a generator: the network as loaded (:class:`ImageGenerator`) and the small
interface the animation engine talks to (:class:`LatentGenerator`).

The engine never reaches into a network: it asks for the latent shape, a starting latent, a
render, the noise buffers it may optimise or freeze, and how to keep a latent on the prior's
support after a step. StyleGAN2 (W / W+) and plain z -> image generators both implement it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class LatentGenerator(Protocol):
    """What the engine needs from a generator. Latents are always [N, num_ws, latent_dim]."""

    latent_dim: int
    num_ws: int
    img_resolution: int
    supports_wplus: bool

    def mean_latent(self) -> Tensor:
        """The starting latent [latent_dim] (w_avg for StyleGAN2)."""
        ...

    def candidate_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random latents [n, num_ws, latent_dim] drawn from the prior, to pick a first frame's start from."""
        ...

    def latent_std(self) -> float:
        """Typical per-coordinate spread of latents, the scale of the exploration noise."""
        ...

    def render(self, latents: Tensor, noise_mode: str = "const") -> Tensor:
        """Images [N, 3, R, R] in about [-1, 1] from latents [N, num_ws, latent_dim]."""
        ...

    def noise_buffers(self) -> dict[str, Tensor]:
        """The live per-layer noise tensors a projector may optimise then freeze (empty if none)."""
        ...

    def constrain(self, latents: Tensor) -> Tensor:
        """Map latents back onto the prior's support after an optimiser step (identity for W)."""
        ...


@runtime_checkable
class ImageGenerator(Protocol):
    """A generator network as :func:`stylepuppet.load_generator` returns it: called like NVIDIA's
    StyleGAN2, ``G(z [N, z_dim], c [N, c_dim], truncation_psi=1, noise_mode="const")`` -> images
    [N, 3, R, R] in about [-1, 1] (generators without labels, truncation or noise accept the defaults)."""

    z_dim: int
    c_dim: int
    img_resolution: int

    def __call__(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                 noise_mode: str = "const") -> Tensor:
        ...
