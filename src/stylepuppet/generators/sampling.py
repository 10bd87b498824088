"""Faces from seeds, as NVIDIA's generate.py makes them (``stylepuppet generate``).

z = ``np.random.RandomState(seed).randn(1, z_dim)`` and images are converted with
``(img * 127.5 + 128).clamp(0, 255)`` to uint8, so seed 7 gives the same face here as with the
official tool, for every generator format the loader reads.
"""

from __future__ import annotations

import numpy as np
import torch

from stylepuppet.errors import ConfigError
from stylepuppet.generators.interface import ImageGenerator
from stylepuppet.images import to_uint8


def seed_z(seed: int, z_dim: int) -> torch.Tensor:
    """NVIDIA's z for a seed, [1, z_dim] float32 (the official mapping casts the float64 draw to float32)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()


def class_label(c_dim: int, class_idx: int | None) -> torch.Tensor:
    """One-hot label [1, c_dim] (empty for unconditional networks)."""
    label = torch.zeros(1, c_dim)
    if c_dim == 0:
        if class_idx is not None:
            raise ConfigError("--class-idx was given but the network is unconditional; drop it")
        return label
    if class_idx is None:
        raise ConfigError(f"the network is class-conditional ({c_dim} classes); give --class-idx 0..{c_dim - 1}")
    if not 0 <= class_idx < c_dim:
        raise ConfigError(f"--class-idx {class_idx} is out of range; the network has classes 0..{c_dim - 1}")
    label[0, class_idx] = 1
    return label


def sample(G: ImageGenerator, seed: int, label: torch.Tensor, *, truncation_psi: float = 1.0,
           noise_mode: str = "const", device: str | torch.device = "cpu") -> np.ndarray:
    """The uint8 image [R, R, 3] of one seed (``noise_mode="random"`` draws its noise from the seed too)."""
    z = seed_z(seed, int(G.z_dim)).to(device)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        img = G(z, label.to(device), truncation_psi=truncation_psi, noise_mode=noise_mode)
    return to_uint8(img)[0]
