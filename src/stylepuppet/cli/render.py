"""`stylepuppet render`: re-render an animation's latents.npz to a video without optimising."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

import stylepuppet
from stylepuppet.cli.animate import echo_warnings
from stylepuppet.cli.options import option_type
from stylepuppet.config import Device, PasteInto
from stylepuppet.errors import UntrainedWarning


@click.command("render")
@click.argument("latents", type=click.Path(path_type=Path))
@click.option("--network", help="Generator the latents were made with (default: the one recorded in them).")
@click.option("--subframes", type=int, help="Frames rendered per latent (default: as recorded).")
@click.option("--device", type=option_type(Device))
@click.option("--paste-back", is_flag=True, help="Render the face pasted back into the whole picture (the look image).")
@click.option("--paste-into", type=option_type(PasteInto),
              help="Picture of --paste-back: look (default) or driving (the driving video's frames).")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output mp4.")
def render_command(latents: Path, network: str | None, subframes: int | None, device: str | None, paste_back: bool,
                   paste_into: str | None, out: Path) -> None:
    """Render LATENTS (an animate run's latents.npz) with its frozen noise to an mp4."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            count = stylepuppet.render(latents, out, network=network, subframes=subframes, device=device,
                                       paste_back=paste_back, paste_into=paste_into)
        finally:
            echo_warnings(caught)
    untrained = any(issubclass(w.category, UntrainedWarning) for w in caught)
    click.echo(f"rendered {count} frames to {out}" + (" (UNTRAINED generator)" if untrained else ""))
