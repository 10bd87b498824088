"""`stylepuppet ui`: the browser app (optional extra ``stylepuppet[ui]``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 opens the app to your network).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to listen on.")
@click.option("--runs", type=click.Path(path_type=Path, file_okay=False), default=Path("stylepuppet-runs"),
              show_default=True, help="Folder that holds one output folder per run.")
@click.option("--samples", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder of the offline networks (models/) and sample files (media/) the page offers "
                   "[default: shared/ beside the repository].")
def ui_command(host: str, port: int, runs: Path, samples: Path | None) -> None:
    """Start the browser app: upload a look image and a driving clip, run, and see the result and its report."""
    if importlib.util.find_spec("gradio") is None:
        raise click.ClickException("the browser app needs the ui extra: pip install 'stylepuppet[ui]'")
    from stylepuppet.ui.app import launch
    from stylepuppet.ui.choices import SHARED

    try:
        launch(host=host, port=port, runs=runs, shared=samples or SHARED)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port} ({exc}); choose another --port") from None
