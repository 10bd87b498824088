"""The `stylepuppet` command: a click group whose sub-commands live in sibling modules.

No maths here: each sub-command parses options and calls the library.
"""

from __future__ import annotations

import sys

import click

from stylepuppet.errors import StylePuppetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stylepuppet")
def main() -> None:
    """Animate StyleGAN2 faces with the facial motion of a driving video."""


def _register() -> None:
    """Attach the sub-commands (imported here so `stylepuppet --help` stays one import away)."""
    from stylepuppet.cli import commands  # noqa: F401  (each module adds itself to `main`)


def run(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    _register()
    try:
        main.main(args=argv, prog_name="stylepuppet", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except StylePuppetError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run())
