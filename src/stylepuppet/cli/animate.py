"""`stylepuppet animate`: a face performs the driving video's facial motion (options -> config -> pipeline)."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

import stylepuppet
from stylepuppet.cli.evaluate import echo_evaluation
from stylepuppet.cli.options import setting_keys, setting_options
from stylepuppet.config import PRESETS, resolve_config
from stylepuppet.errors import LookWarning, UntrainedWarning


def echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Untrained-network and look warnings as one loud line each on stderr; other warnings as Python shows them."""
    for w in caught:
        if issubclass(w.category, (UntrainedWarning, LookWarning)):
            click.secho(f"WARNING: {w.message}", err=True, fg="red", bold=True)
        else:
            click.echo(warnings.formatwarning(w.message, w.category, w.filename, w.lineno), err=True, nl=False)


@click.command("animate")
@click.option("--look", type=click.Path(path_type=Path), help="Look image whose identity is kept (keep-identity).")
@click.option("--driving", required=True, type=click.Path(path_type=Path), help="Driving video (or image folder).")
@click.option("--preset", type=click.Choice(PRESETS),
              help="Starting settings (default: keep-identity; free with --mode free).")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="TOML file of settings (over the preset; the options below override it).")
@setting_options
@click.option("--track", "track_file", type=click.Path(path_type=Path), help="Reuse a track.npz of the driving video.")
@click.option("--look-latent", type=click.Path(path_type=Path),
              help="Reuse the look's projection (look_latent.npz of `stylepuppet project` or of a run).")
@click.option("--restart", is_flag=True, help="Discard a saved run in OUT and start over.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--evaluate", "judge", is_flag=True,
              help="Then judge the result as `stylepuppet evaluate` does (figures, OUT/report.html).")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
def animate_command(look: Path | None, driving: Path, preset: str | None, config_file: Path | None,
                    track_file: Path | None, look_latent: Path | None, restart: bool, quiet: bool, judge: bool,
                    out: Path, **options: object) -> None:
    """Animate a face with the facial motion of a DRIVING video.

    Writes OUT/animation.mp4, OUT/side_by_side.mp4, OUT/latents.npz and OUT/config.json (in
    keep-identity mode also the look's projection, as `stylepuppet project` writes it); running the
    same command again resumes an interrupted run. With --evaluate, also OUT/evaluation.mp4 and the
    report. Each option after --config sets the setting named in brackets, which a --config file can
    set too.
    """
    keys = setting_keys()
    cfg = resolve_config(preset, config_file, {keys[name]: value for name, value in options.items()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = stylepuppet.animate(driving, out, look=look, config=cfg, track=track_file,
                                         look_latent=look_latent, restart=restart, progress=not quiet)
        finally:
            echo_warnings(caught)
    click.echo(result.summary())
    if judge:
        echo_evaluation(stylepuppet.evaluate(out, driving, progress=not quiet), out)
