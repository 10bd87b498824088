"""`stylepuppet track`: the driving video's face track (landmarks, smoothed FFHQ quads) to track.npz."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stylepuppet.cli import main

if TYPE_CHECKING:
    from stylepuppet.face.track import FaceTrack


@main.command("track")
@click.argument("driving", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("track.npz"), show_default=True,
              help="Where to write the track (.npz).")
@click.option("--backend", type=click.Choice(["dlib", "fan"]), default="dlib", show_default=True,
              help="Landmark backend (both find faces with dlib's HOG detector).")
@click.option("--fan-weights", default="fan-2dfan4", show_default=True,
              help="FAN weights for --backend fan: a file or a weights-registry name.")
@click.option("--upsample", type=click.IntRange(0, 3), default=0, show_default=True,
              help="Extra HOG passes on a 2x larger image when no face is found (small faces).")
@click.option("--smooth", type=click.FloatRange(min=0), default=1.5, show_default=True,
              help="Smoothing strength: the landmarks' Gaussian sigma in frames; the quads get 4/3x (centre) "
                   "and 4x (size, angle) of it. 0 disables smoothing.")
@click.option("--smooth-centre", type=click.FloatRange(min=0), help="Override the quad-centre sigma (frames).")
@click.option("--smooth-shape", type=click.FloatRange(min=0), help="Override the quad size/angle sigma (frames).")
@click.option("--size", type=click.IntRange(min=16), default=256, show_default=True,
              help="Side of the aligned crops in the preview.")
@click.option("--preview", type=click.Path(path_type=Path),
              help="Also write an mp4 of the aligned crops with the smoothed landmarks drawn on them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def track_command(driving: Path, output: Path, backend: str, fan_weights: str, upsample: int, smooth: float,
                  smooth_centre: float | None, smooth_shape: float | None, size: int, preview: Path | None,
                  quiet: bool) -> None:
    """Find one face in every frame of DRIVING (video, image folder or image), align it like FFHQ and
    smooth it in time; write landmarks, quads and the jitter/lag figures to OUTPUT."""
    from dataclasses import replace

    from stylepuppet.face.detect import make_detector
    from stylepuppet.face.smoothing import SmoothingSettings
    from stylepuppet.face.track import track_video
    from stylepuppet.video import open_frames

    with open_frames(driving):  # unreadable input fails here, before the landmark model loads
        pass

    settings = SmoothingSettings.from_strength(smooth)
    if smooth_centre is not None:
        settings = replace(settings, centre=smooth_centre)
    if smooth_shape is not None:
        settings = replace(settings, shape=smooth_shape)
    options: dict[str, object] = {"upsample": upsample}
    if backend == "fan":
        options["weights"] = fan_weights
    detector = make_detector(backend, **options)
    track = track_video(driving, detector, smooth=settings, progress=not quiet)
    track.save(output)
    if preview is not None:
        write_preview(driving, track, size, preview, progress=not quiet)
    click.echo(f"{track.summary()} -> {output}")


def write_preview(driving: Path, track: FaceTrack, size: int, path: Path, *, progress: bool) -> None:
    """Aligned crops with the smoothed landmarks drawn (green) over the raw ones (red, detected frames)."""
    import numpy as np
    from tqdm import tqdm

    from stylepuppet.face.align import to_aligned
    from stylepuppet.face.draw import draw_landmarks
    from stylepuppet.face.track import aligned_frames
    from stylepuppet.video import VideoWriter, open_frames

    with open_frames(driving) as frames:
        audio = frames.audio_source
    smoothed = track.aligned_landmarks(size)
    raw = to_aligned(np.nan_to_num(track.landmarks_raw), track.quads, size)
    with VideoWriter(path, track.fps, audio_from=audio) as writer:
        crops = aligned_frames(driving, track, size)
        for t, crop in enumerate(tqdm(crops, total=track.num_frames, disable=not progress, unit="frame",
                                      desc="preview", leave=False)):
            image = crop.image
            if track.detected[t]:
                image = draw_landmarks(image, raw[t], colour=(255, 64, 64), lines=False, radius=1.0)
            writer.write(draw_landmarks(image, smoothed[t]))
