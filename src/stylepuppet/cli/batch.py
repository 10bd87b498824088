"""`stylepuppet batch`: many animate runs (looks × driving clips of a batch file) in parallel on Ray."""

from __future__ import annotations

from pathlib import Path

import click

import stylepuppet
from stylepuppet.cli.options import setting_keys, setting_options
from stylepuppet.errors import StylePuppetError


@click.command("batch")
@click.argument("batch_file", type=click.Path(path_type=Path))
@click.option("--jobs", type=click.IntRange(min=1), help="Jobs at a time (default: the cores at --threads each; on a "
              "cluster, as many as it schedules).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Torch threads per job.")
@click.option("--address", help="Join the Ray cluster at this address (e.g. 10.0.0.5:6379, or auto) instead of "
              "starting a local Ray.")
@click.option("--evaluate", is_flag=True, help="Judge every finished job (figures in the manifest).")
@setting_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder (a folder per job).")
def batch_command(batch_file: Path, jobs: int | None, threads: int, address: str | None, evaluate: bool, quiet: bool,
                  out: Path, **options: object) -> None:
    """Run the animate jobs of BATCH_FILE (looks × driving clips, shared settings, per-job overrides; see the
    README) in parallel, each in OUT/<job name>/.

    Writes OUT/batch.json and OUT/batch.csv (per job: inputs, status, wall time, frames, error, figures).
    Running it again skips finished jobs and resumes the others. The setting options apply to every job,
    over the batch file. Exits with status 1 when a job failed.
    """
    keys = setting_keys()
    overrides = {keys[name]: value for name, value in options.items()}
    result = stylepuppet.batch(batch_file, out, jobs=jobs, threads=threads, address=address, evaluate=evaluate,
                               progress=not quiet, **overrides)
    click.echo(result.summary())
    for record in result.failed:
        click.echo(f"{record.name}: {record.error}", err=True)
    if result.failed:
        raise StylePuppetError(f"{len(result.failed)} of {len(result.records)} jobs failed (errors above and in "
                               f"{out / 'batch.json'})")
