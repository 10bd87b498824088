"""`stylepuppet animate`: a face performs the driving video's facial motion (options -> config -> pipeline)."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from stylepuppet.cli import main

#: CLI option name -> dotted config key (None values are "not given" and leave the config alone).
_KEYS = {
    "mode": "mode", "space": "space", "network": "network", "landmark_net": "landmarks.net",
    "landmark_weights": "landmarks.weights", "look_loss": "look_loss", "look_weights": "look_weights",
    "form": "landmarks.form", "compare": "landmarks.compare", "groups": "landmarks.groups",
    "jitter": "landmarks.jitter_count", "reference": "landmarks.reference",
    "lambda_look": "loss.look", "lambda_landmark": "loss.landmark", "lambda_smoothness": "loss.smoothness",
    "lambda_fidelity": "loss.fidelity", "lambda_noise": "loss.noise",
    "steps_first": "schedule.steps_first", "steps": "schedule.steps", "lr": "schedule.lr",
    "smooth": "track.smooth", "detector": "track.detector",
    "subframes": "subframes", "latent_smooth": "latent_smooth", "max_frames": "max_frames", "start": "start",
    "end": "end", "seed": "seed",
    "device": "device", "untrained": "untrained", "untrained_size": "untrained_size",
    "start_candidates": "start_candidates", "start_rehearsal": "start_rehearsal",
}


def echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Untrained-network warnings as one loud line each on stderr; other warnings as Python shows them."""
    from stylepuppet.animation.networks import UntrainedWarning

    for w in caught:
        if issubclass(w.category, UntrainedWarning):
            click.secho(f"WARNING: {w.message}", err=True, fg="red", bold=True)
        else:
            click.echo(warnings.formatwarning(w.message, w.category, w.filename, w.lineno), err=True, nl=False)


@main.command("animate")
@click.option("--look", type=click.Path(path_type=Path), help="Look image whose identity is kept (keep-identity).")
@click.option("--driving", required=True, type=click.Path(path_type=Path), help="Driving video (or image folder).")
@click.option("--mode", type=click.Choice(["keep-identity", "free"]), help="keep-identity (needs --look) or free.")
@click.option("--preset",
              help="seed | fast | keep-identity | free | quick (default: keep-identity; free with --mode free).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML file of settings.")
@click.option("--network", help="Generator: registry name or file (StyleGAN2 pickle/.pt/safetensors, DCGAN .pt).")
@click.option("--landmark-net", type=click.Choice(["fan", "mesh"]), help="Landmark network of the loss.")
@click.option("--landmark-weights", help="Landmark network weights: registry name or file.")
@click.option("--look-loss", type=click.Choice(["lpips", "msssim"]),
              help="LPIPS-VGG, or the weights-free MS-SSIM + L1 (offline choice).")
@click.option("--look-weights", help="LPIPS weights: registry name or file.")
@click.option("--space", type=click.Choice(["w", "w+"]), help="Search space: one latent (w) or one per layer (w+).")
@click.option("--form", type=click.Choice(["heatmap", "relative"]), help="Landmark loss form.")
@click.option("--compare", type=click.Choice(["coords", "heatmaps"]), help="How the relative form compares.")
@click.option("--groups", help="Landmark group weights, e.g. mouth=5,eyes=0 (applied over the preset's).")
@click.option("--jitter", type=int, help="Random framings per step for the landmark loss (0: none).")
@click.option("--start-candidates", type=int,
              help="Free mode: start from the best of N random faces (0: the generator's mean face).")
@click.option("--start-rehearsal", type=int,
              help="Free mode: the best N start faces rehearse the driver's most expressive frame; the one "
                   "that follows furthest starts (0 or 1: no rehearsal).")
@click.option("--reference", type=int, help="Driving frame (in the run) whose landmarks are the motion's zero.")
@click.option("--lambda-look", type=float, help="λ1: look (LPIPS / MS-SSIM) weight.")
@click.option("--lambda-landmark", type=float, help="λ2: landmark weight.")
@click.option("--lambda-smoothness", type=float, help="λ3: ‖w_i − w_{i−1}‖ weight.")
@click.option("--lambda-fidelity", type=float, help="λ4: ‖w − w_avg‖ weight.")
@click.option("--lambda-noise", type=float, help="Noise regularisation weight (frame 0).")
@click.option("--steps-first", type=int, help="Optimisation steps of the first frame.")
@click.option("--steps", type=int, help="Optimisation steps of every later frame.")
@click.option("--lr", type=float, help="Peak Adam learning rate.")
@click.option("--smooth", type=float, help="Temporal smoothing of the face track in frames (0: none).")
@click.option("--detector", type=click.Choice(["dlib", "fan"]), help="Face detector of the track and the look.")
@click.option("--track", "track_file", type=click.Path(path_type=Path), help="Reuse a track.npz of the driving video.")
@click.option("--subframes", type=int, help="Frames rendered per driving frame (k; 1 disables interpolation).")
@click.option("--latent-smooth", type=float,
              help="σ in frames of a temporal Gaussian on the latents before rendering (0: none).")
@click.option("--max-frames", type=int, help="Use at most N driving frames.")
@click.option("--start", type=int, help="First driving frame.")
@click.option("--end", type=int, help="Driving frame to stop before.")
@click.option("--seed", type=int, help="Random seed (runs are deterministic on CPU).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]))
@click.option("--untrained", is_flag=True, default=None,
              help="Substitute random networks for missing weights (output stamped UNTRAINED).")
@click.option("--untrained-size", type=click.Choice(["tiny", "full"]), help="Size of substituted networks.")
@click.option("--restart", is_flag=True, help="Discard a saved run in OUT and start over.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
def animate_command(look: Path | None, driving: Path, preset: str | None, config_file: Path | None,
                    track_file: Path | None, restart: bool, quiet: bool, out: Path, **options: object) -> None:
    """Animate a face with the facial motion of a DRIVING video.

    Writes OUT/animation.mp4, OUT/side_by_side.mp4, OUT/latents.npz and OUT/config.json; running the
    same command again resumes an interrupted run.
    """
    from stylepuppet.animation.run import animate
    from stylepuppet.config import resolve_config

    cfg = resolve_config(preset, config_file, {_KEYS[k]: v for k, v in options.items()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = animate(cfg, driving, out, look=look, track=track_file, restart=restart, progress=not quiet)
        finally:
            echo_warnings(caught)
    click.echo(result.summary())
