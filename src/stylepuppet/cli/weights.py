"""`stylepuppet weights list | fetch | verify | import | convert`: the pretrained-weights cache."""

from __future__ import annotations

from pathlib import Path

import click

from stylepuppet import weights
from stylepuppet.errors import WeightsError


@click.group("weights")
def weights_group() -> None:
    """Pretrained weights: list the registry, download, verify, import files, convert formats."""


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _cached_state(entry: weights.WeightsEntry) -> str:
    path = weights.cache_path(entry)
    if path.is_file():
        return _size(path.stat().st_size)
    part = weights.part_path(path)
    return f"partial {_size(part.stat().st_size)}" if part.is_file() else "-"


@weights_group.command("list")
def list_cmd() -> None:
    """Show the known weights and which are cached (without re-hashing; see `verify`)."""
    rows = [(name + (" *" if name == weights.DEFAULT_GENERATOR else ""), e.kind, str(e.resolution or "-"),
             _cached_state(e), e.description) for name, e in weights.REGISTRY.items()]
    header = ("NAME", "KIND", "RES", "CACHED", "DESCRIPTION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    click.echo(f"* default generator; `stylepuppet weights info NAME` shows an entry's URL, licence and hashes; "
               f"cache: {weights.cache_dir()} (set {weights.CACHE_ENV} to move it)")


@weights_group.command("info")
@click.argument("name")
def info_cmd(name: str) -> None:
    """Show everything the registry knows of NAME: URL, licence, published hash and size, cached file."""
    entry = weights.lookup(name)
    path = weights.cache_path(entry)
    published = entry.sha256 or (f"starts with {entry.sha256_prefix}" if entry.sha256_prefix else "none published")
    rows = [("name", entry.name + (" (the default generator)" if name == weights.DEFAULT_GENERATOR else "")),
            ("kind", entry.kind + (f", {entry.resolution}²" if entry.resolution else "")),
            ("description", entry.description), ("url", entry.url), ("licence", entry.licence),
            ("sha256", published), ("size", _size(entry.size) if entry.size else "not published"),
            ("cache file", f"{path} ({_cached_state(entry)})")]
    for key, value in rows:
        click.echo(f"{key + ':':<13}{value}")


@weights_group.command("fetch")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
def fetch_cmd(names: tuple[str, ...]) -> None:
    """Download registry entries (or http(s) URLs) into the cache (resuming partial downloads) and verify them."""
    for name in names:
        click.echo(f"{name}: {weights.fetch(name)}")


@weights_group.command("verify")
def verify_cmd() -> None:
    """Re-hash every cached file against its published or recorded sha256."""
    results = weights.verify_cached()
    if not results:
        click.echo(f"nothing cached in {weights.cache_dir()}")
        return
    for r in results:
        click.echo(f"{r.status:<8}  {r.name}  {r.path}  ({r.detail})")
    bad = [r.name for r in results if not r.ok]
    if bad:
        raise WeightsError(f"{len(bad)} of {len(results)} cached files failed verification ({', '.join(bad)}); "
                           "delete them and fetch them again")


@weights_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Registry entry the file is (when it cannot be identified from its hash or name).")
def import_cmd(path: Path, name: str | None) -> None:
    """Copy a downloaded weights file into the cache, for machines without internet access."""
    result = weights.import_file(path, name=name)
    note = " (replaced a different file)" if result.replaced else ""
    click.echo(f"imported {path} as {result.entry.name}: {result.path}{note}")
    click.echo(f"licence: {result.entry.licence}")


@weights_group.command("convert")
@click.argument("source", metavar="IN")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT")
@click.option("--which", type=click.Choice(["G_ema", "G"]), default="G_ema", show_default=True,
              help="Which generator of an NVIDIA pickle to convert.")
def convert_cmd(source: str, out: Path, which: str) -> None:
    """Convert a generator (registry name, URL or file) to our safetensors + JSON format."""
    from stylepuppet.generators.loader import convert_generator

    convert_generator(weights.resolve(source, kind=weights.GENERATOR_KINDS), out, which=which)
    click.echo(f"wrote {out}")
