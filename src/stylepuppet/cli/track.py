"""`stylepuppet track`: the driving video's face track (landmarks, smoothed FFHQ quads) to track.npz."""

from __future__ import annotations

import typing
from dataclasses import replace
from pathlib import Path

import click

import stylepuppet
from stylepuppet import weights
from stylepuppet.config import Detector, TrackConfig


@click.command("track")
@click.argument("driving", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("track.npz"), show_default=True,
              help="Where to write the track (.npz).")
@click.option("--backend", type=click.Choice(typing.get_args(Detector)), default=TrackConfig.detector,
              show_default=True, help="Landmark backend (both find faces with dlib's HOG detector).")
@click.option("--fan-weights", default=weights.DEFAULTS["fan"], show_default=True,
              help="FAN weights for --backend fan: a file or a weights-registry name.")
@click.option("--upsample", type=click.IntRange(0, 3), default=0, show_default=True,
              help="Extra HOG passes on a 2x larger image when no face is found (small faces).")
@click.option("--smooth", type=click.FloatRange(min=0), default=TrackConfig.smooth, show_default=True,
              help="Smoothing strength: the landmarks' Gaussian sigma in frames; the quads get 4/3x (centre) "
                   "and 4x (size, angle) of it. 0 disables smoothing.")
@click.option("--smooth-centre", type=click.FloatRange(min=0), help="Override the quad-centre sigma (frames).")
@click.option("--smooth-shape", type=click.FloatRange(min=0), help="Override the quad size/angle sigma (frames).")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Side of the aligned crops in the preview.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="First frame to track (an animation with --start N takes a track made from frame N).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Track at most N frames.")
@click.option("--preview", type=click.Path(path_type=Path),
              help="Also write an mp4 of the aligned crops with the smoothed landmarks drawn on them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def track_command(driving: Path, output: Path, backend: str, fan_weights: str, upsample: int, smooth: float,
                  smooth_centre: float | None, smooth_shape: float | None, size: int, start: int,
                  max_frames: int | None, preview: Path | None, quiet: bool) -> None:
    """Find one face in every frame of DRIVING (video, image folder or image), align it like FFHQ and
    smooth it in time; write landmarks, quads and the jitter/lag figures to OUTPUT."""
    from stylepuppet.face.detect import make_detector
    from stylepuppet.face.smoothing import SmoothingSettings
    from stylepuppet.face.track import write_preview
    from stylepuppet.video import open_frames

    with open_frames(driving, start=start, max_frames=max_frames):  # unreadable input fails here, before the
        pass  # landmark model loads
    settings = SmoothingSettings.from_strength(smooth)
    if smooth_centre is not None:
        settings = replace(settings, centre=smooth_centre)
    if smooth_shape is not None:
        settings = replace(settings, shape=smooth_shape)
    options: dict[str, object] = {"upsample": upsample}
    if backend == "fan":
        options["weights"] = fan_weights
    track = stylepuppet.track(driving, detector=make_detector(backend, **options), smooth=settings, start=start,
                              max_frames=max_frames, progress=not quiet)
    track.save(output)
    if preview is not None:
        write_preview(driving, track, size, preview, progress=not quiet)
    click.echo(f"{track.summary()} -> {output}")
