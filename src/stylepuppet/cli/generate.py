"""`stylepuppet generate`: random faces from a generator, a sanity check of weights and installation.

Seeds mean what they mean in NVIDIA's generate.py: z = ``np.random.RandomState(seed).randn(1, z_dim)``,
and images are converted with ``(img * 127.5 + 128).clamp(0, 255)`` to uint8, so seed 7 gives the
same face here as with the official tool.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import numpy as np
import torch

from stylepuppet import weights
from stylepuppet.cli import main
from stylepuppet.errors import ConfigError

MAX_SEED = 2**32 - 1  # RandomState accepts seeds in [0, 2**32)


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> [0, 1, 2, 3, 7]: comma-separated seeds and inclusive ranges, duplicates dropped."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ValueError(f"{part!r} is neither a seed nor a range like 0-3")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first:
            raise ValueError(f"range {part!r} runs backwards")
        if last > MAX_SEED:
            raise ValueError(f"seeds must be at most {MAX_SEED}")
        seeds.extend(range(first, last + 1))
    return list(dict.fromkeys(seeds))


class SeedList(click.ParamType):
    name = "SEEDS"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            return parse_seeds(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def seed_z(seed: int, z_dim: int) -> torch.Tensor:
    """NVIDIA's z for a seed, [1, z_dim] float32 (the official mapping casts the float64 draw to float32)."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in about [-1, 1] -> uint8 [N, H, W, 3], exactly as NVIDIA's generate.py."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


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


@main.command("generate")
@click.option("--network", default=weights.DEFAULT_GENERATOR, show_default=True,
              help="Registry name, URL or generator file (NVIDIA pickle, rosinality .pt, ours).")
@click.option("--seeds", type=SeedList(), default="0-3", show_default=True, help="Seeds, e.g. 0-3,7.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi (1 = none; 0.7 gives more typical faces).")
@click.option("--class-idx", type=int, help="Class of a class-conditional network.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for seedNNNN.png (created).")
def generate_cmd(network: str, seeds: list[int], truncation_psi: float, class_idx: int | None, noise_mode: str,
                 device: str, outdir: Path) -> None:
    """Write one PNG per seed from a StyleGAN2 generator (same seeds, same faces as NVIDIA's generate.py)."""
    from stylepuppet.generators.loader import load_generator
    from stylepuppet.video import write_png

    G = load_generator(network, device=device)
    label = class_label(int(G.c_dim), class_idx).to(device)
    for seed in seeds:
        z = seed_z(seed, int(G.z_dim)).to(device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # noise-mode random stays reproducible per seed
            img = G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode)
        path = write_png(outdir / f"seed{seed:04d}.png", to_uint8(img)[0])
        click.echo(str(path))
