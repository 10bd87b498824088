"""`stylepuppet project`: the look alone, projected as keep-identity mode does before its first frame."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

import stylepuppet
from stylepuppet.cli.animate import echo_warnings
from stylepuppet.cli.options import setting_keys, setting_options
from stylepuppet.config import PRESETS, resolve_config


@click.command("project")
@click.argument("look", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(PRESETS), help="Starting settings (default: keep-identity).")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="TOML file of settings (over the preset; the options below override it).")
@setting_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
def project_command(look: Path, preset: str | None, config_file: Path | None, quiet: bool, out: Path,
                    **options: object) -> None:
    """Project the LOOK image into the generator: can it draw this face?

    Writes OUT/look_aligned.png (the look framed the way the generator frames faces),
    OUT/look_reconstruction.png (framed look | reconstruction), OUT/look_latent.npz (give it to
    `animate --look-latent` to skip the projection there) and OUT/look_projection.json (look loss,
    identity distance to the look, the quad that framed it). Takes animate's settings.
    """
    keys = setting_keys()
    cfg = resolve_config(preset, config_file, {keys[name]: value for name, value in options.items()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            latent = stylepuppet.project(look, out, config=cfg, progress=not quiet)
        finally:
            echo_warnings(caught)
    click.echo(f"{latent.summary()}; files in {out}")
