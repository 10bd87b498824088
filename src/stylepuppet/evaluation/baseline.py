"""The random-walk baseline: how well does a latent path with no knowledge of the driver correlate?

A driven run's latents move by some step each frame. A walk that starts at the same latent and
takes steps of exactly those sizes in random directions (kept on the prior's support by the same
``constrain``) shows how much mouth correlation chance and the generator's own habits produce.
A driven run is only evidence if it beats the walks' upper percentiles.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def step_norms(latents: Tensor) -> Tensor:
    """Euclidean size [T-1] of each frame-to-frame latent step of latents [T, ...]."""
    return (latents[1:] - latents[:-1]).flatten(1).norm(dim=1)


def random_walks(latents: Tensor, count: int, constrain: Callable[[Tensor], Tensor],
                 generator: torch.Generator | None = None, refine: int = 3) -> Tensor:
    """``count`` walks [count, T, ...] from ``latents[0]`` with the step sizes of ``latents`` [T, ...].

    Each step goes in a uniformly random direction and is followed by ``constrain``, as the
    optimiser's steps are. A projection shortens a step (on the sphere by up to a few percent), so
    the step taken before it is rescaled ``refine`` times until the step that remains has the run's size.
    """
    if latents.ndim < 2 or latents.shape[0] < 2:
        raise ValueError(f"latents must be [T >= 2, ...], got {tuple(latents.shape)}")
    sizes = step_norms(latents)
    current = latents[0].expand(count, *latents.shape[1:]).clone()
    per_walk = (-1, *[1] * (current.ndim - 1))
    path = [current]
    for size in sizes:
        direction = torch.randn(current.shape, generator=generator, dtype=current.dtype)
        direction = direction / direction.flatten(1).norm(dim=1).view(per_walk)
        length = torch.full((count,), float(size), dtype=current.dtype)
        for _ in range(refine + 1):
            moved = constrain(current + length.view(per_walk) * direction)
            taken = (moved - current).flatten(1).norm(dim=1)
            length = length * torch.where(taken > 0, size / taken.clamp_min(1e-12), torch.ones_like(taken))
        current = moved
        path.append(current)
    return torch.stack(path, dim=1)
