"""Statistics of a StyleGAN2 generator's W space, as NVIDIA's projector computes them.

``w_avg`` is the network's own tracked mean (``mapping.w_avg``). ``w_mean`` and ``w_std`` come
from ``num_samples`` latents z drawn with ``np.random.RandomState(seed).randn`` (NVIDIA's choice:
10 000 samples, seed 123) and mapped without truncation; ``w_std`` is the scalar
``sqrt(sum((w - w_mean)²) / num_samples)`` over all samples and coordinates, the scale of the
projector's exploration noise.

Mapping 10 000 samples costs about a second, so the result is cached as JSON in the weights cache
(``<cache>/latent-stats/``), keyed by a hash of the mapping network's tensors together with
``num_samples`` and ``seed``. Only the mapping network determines these statistics, so the key
follows the network, not the file: the same network in a pickle or in our safetensors format
shares one entry, and ``G`` and ``G_ema`` of one pickle get their own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stylepuppet import atomic, weights

FORMAT = 1


@dataclass(frozen=True)
class LatentStats:
    """W-space statistics of one generator: ``w_avg``/``w_mean`` [w_dim] float32 on the CPU."""

    w_avg: Tensor
    w_mean: Tensor
    w_std: float
    num_samples: int
    seed: int


def sample_z(num_samples: int, z_dim: int, seed: int, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of z, float64 [b, z_dim], in the order of one ``RandomState(seed).randn(num_samples, z_dim)``."""
    rng = np.random.RandomState(seed)
    for start in range(0, num_samples, batch_size):
        yield rng.randn(min(batch_size, num_samples - start), z_dim)


def mean_and_scalar_std(ws: Tensor) -> tuple[Tensor, float]:
    """Sample mean [C] of ``ws`` [N, C] and the scalar root of the summed per-coordinate variance (ddof 0)."""
    w64 = ws.double()
    mean = w64.mean(dim=0)
    std = float(((w64 - mean) ** 2).sum().div(ws.shape[0]).sqrt())
    return mean.float(), std


def network_key(G: Any, num_samples: int, seed: int) -> str:
    """Hash of everything the statistics depend on: the mapping network's tensors and settings (its learning-rate
    multiplier scales its weights), z/c sizes, samples, seed."""
    settings = json.dumps((getattr(G, "init_kwargs", None) or {}).get("mapping_kwargs") or {}, sort_keys=True,
                          default=str)
    digest = hashlib.sha256(f"v{FORMAT} z{G.z_dim} c{G.c_dim} w{G.w_dim} n{num_samples} s{seed} {settings}".encode())
    for name, tensor in sorted(G.mapping.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def compute_latent_stats(G: Any, num_samples: int = 10_000, seed: int = 123, batch_size: int = 1000) -> LatentStats:
    """Map ``num_samples`` seeded z (class label zero for conditional nets) and summarise the W vectors."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    device = G.mapping.w_avg.device
    chunks = []
    for z in sample_z(num_samples, int(G.z_dim), seed, batch_size):
        zt = torch.from_numpy(z).to(device=device, dtype=torch.float32)
        c = torch.zeros(zt.shape[0], int(G.c_dim), device=device)
        chunks.append(G.mapping(zt, c, truncation_psi=1)[:, 0].float().cpu())
    w_mean, w_std = mean_and_scalar_std(torch.cat(chunks))
    w_avg = G.mapping.w_avg.detach().float().cpu().clone()
    return LatentStats(w_avg=w_avg, w_mean=w_mean, w_std=w_std, num_samples=num_samples, seed=seed)


def stats_path(key: str) -> Path:
    return weights.cache_dir() / "latent-stats" / f"{key}.json"


def latent_stats(G: Any, num_samples: int = 10_000, seed: int = 123, *, cache: bool = True) -> LatentStats:
    """The W statistics of ``G`` (see the module docstring), from the cache when it has them."""
    key = network_key(G, num_samples, seed)
    path = stats_path(key)
    w_avg = G.mapping.w_avg.detach().float().cpu().clone()
    if cache:
        stored = _read(path, key, int(G.w_dim))
        if stored is not None:
            w_mean, w_std = stored
            return LatentStats(w_avg=w_avg, w_mean=w_mean, w_std=w_std, num_samples=num_samples, seed=seed)
    stats = compute_latent_stats(G, num_samples, seed)
    if cache:
        _write(path, key, stats)
    return stats


def _read(path: Path, key: str, w_dim: int) -> tuple[Tensor, float] | None:
    """A stored (w_mean, w_std), or None when absent or unusable (then it is simply recomputed)."""
    try:
        data = json.loads(path.read_text())
        w_mean = torch.tensor(data["w_mean"], dtype=torch.float32)
        if data["key"] != key or w_mean.shape != (w_dim,):
            return None
        return w_mean, float(data["w_std"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, key: str, stats: LatentStats) -> None:
    """Store atomically; a cache that cannot be written only costs the recomputation next time."""
    data = {"format": FORMAT, "key": key, "num_samples": stats.num_samples, "seed": stats.seed,
            "w_std": stats.w_std, "w_mean": stats.w_mean.tolist()}
    try:
        atomic.write_text(path, json.dumps(data))
    except OSError:
        return
