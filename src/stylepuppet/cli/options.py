"""Command-line options derived from the config's settings: flag, type, choices and help come from the
fields of :class:`~stylepuppet.config.AnimateConfig`, so the command line never restates the schema."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

from stylepuppet.config import settings

F = TypeVar("F", bound=Callable[..., Any])


def option_type(tp: Any) -> Any:
    """The click type of a setting's annotation: a choice for a ``Literal``, the inner type of ``X | None``."""
    if typing.get_origin(tp) is Literal:
        return click.Choice(typing.get_args(tp))
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return option_type(next(a for a in typing.get_args(tp) if a is not type(None)))
    return tp if tp in (int, float, str) else str  # group weights are text ("mouth=5,eyes=0") the config parses


def setting_keys() -> dict[str, str]:
    """Python name of each setting's option -> the setting's dotted key (``lambda_look`` -> ``loss.look``)."""
    return {f.metadata["flag"].replace("-", "_"): key for key, f, _ in settings() if f.metadata.get("flag")}


def setting_options(command: F) -> F:
    """Add an option for every setting that has a flag. Options not given are None (the config keeps its
    value); the command turns them into overrides with :func:`setting_keys`."""
    for key, f, tp in reversed(list(settings())):
        flag = f.metadata.get("flag")
        if flag is None:
            continue
        text = f"{f.metadata['help']} [{key}]"
        if tp is bool:
            command = click.option(f"--{flag}", is_flag=True, default=None, help=text)(command)
        else:
            command = click.option(f"--{flag}", type=option_type(tp), help=text)(command)
    return command
