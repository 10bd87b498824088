"""`stylepuppet generate`: random faces from a generator, a sanity check of weights and installation."""

from __future__ import annotations

import re
from pathlib import Path

import click

import stylepuppet
from stylepuppet import weights
from stylepuppet.cli.options import option_type
from stylepuppet.config import Device

MAX_SEED = 2**32 - 1  # NVIDIA's seeds are numpy RandomState seeds, in [0, 2**32)


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


@click.command("generate")
@click.option("--network", default=weights.DEFAULT_GENERATOR, show_default=True,
              help="Registry name, URL or generator file (NVIDIA pickle, rosinality .pt, ours, DCGAN .pt).")
@click.option("--seeds", type=SeedList(), default="0-3", show_default=True, help="Seeds, e.g. 0-3,7.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi (1 = none; 0.7 gives more typical faces; StyleGAN2 only).")
@click.option("--class-idx", type=int, help="Class of a class-conditional network.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--device", type=option_type(Device), default="cpu", show_default=True)
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for seedNNNN.png (created).")
def generate_command(network: str, seeds: list[int], truncation_psi: float, class_idx: int | None, noise_mode: str,
                     device: str, outdir: Path) -> None:
    """Write one PNG per seed from a generator (for StyleGAN2: the faces NVIDIA's generate.py makes of the seeds)."""
    from stylepuppet.generators.sampling import class_label, sample
    from stylepuppet.video import write_png

    G = stylepuppet.load_generator(network, device=device)
    label = class_label(int(G.c_dim), class_idx)
    for seed in seeds:
        image = sample(G, seed, label, truncation_psi=truncation_psi, noise_mode=noise_mode, device=device)
        click.echo(str(write_png(outdir / f"seed{seed:04d}.png", image)))
