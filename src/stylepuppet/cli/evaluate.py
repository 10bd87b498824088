"""`stylepuppet evaluate`: the figures that say whether an animation follows its driver (dlib as judge)."""

from __future__ import annotations

from pathlib import Path

import click

import stylepuppet


@click.command("evaluate")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--driving", required=True, type=click.Path(path_type=Path), help="The driving clip of the run.")
@click.option("--network", help="Generator of the run (default: the one recorded in OUT/latents.npz).")
@click.option("--walks", type=click.IntRange(min=2), default=10, show_default=True,
              help="Random walks for the chance baseline.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random walks.")
@click.option("--video", type=click.Path(path_type=Path), help="Side-by-side video (default OUT/evaluation.mp4).")
def evaluate_command(out: Path, driving: Path, network: str | None, walks: int, seed: int, video: Path | None) -> None:
    """Judge the animate output folder OUT against its DRIVING clip with dlib (not in any loss).

    Prints the driver/output mouth-opening correlation, the same for random latent walks with the
    run's step sizes (median, 95th percentile), identity drift and landmark jitter, and writes a
    side-by-side video (driver | output, landmarks drawn).
    """
    evaluation = stylepuppet.evaluate(out, driving, network=network, walks=walks, seed=seed, video=video)
    for line in evaluation.lines():
        click.echo(line)
    click.echo(f"side-by-side video: {evaluation.video}")
