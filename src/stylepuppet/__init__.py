"""stylepuppet: animate a generated face with the facial motion of a driving video.

The public API: :func:`animate`, :func:`project`, :func:`batch`, :func:`render`, :func:`evaluate`, :func:`track`,
:func:`load_generator` and :func:`make_config` (see :mod:`stylepuppet.api`), the settings types
(:class:`AnimateConfig` and its sections, :func:`preset`) and :class:`StylePuppetError`, the base of
every error meant for the user. Example::

    import stylepuppet
    result = stylepuppet.animate("talking.mp4", "out/run", look="portrait.jpg", preset="quick")
    print(result.summary())

The functions are imported on first use: the command line imports this package, and importing them
(torch and the networks' code) up front made ``stylepuppet --help`` cost 4 s of CPU time instead of 0.5 s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stylepuppet.config import PRESETS, AnimateConfig, LandmarkConfig, LossWeights, Schedule, TrackConfig, preset
from stylepuppet.errors import StylePuppetError

if TYPE_CHECKING:
    from stylepuppet.api import (
        AnimateResult,
        BatchResult,
        Evaluation,
        FaceTrack,
        LookLatent,
        animate,
        batch,
        evaluate,
        load_generator,
        make_config,
        project,
        render,
        track,
    )

_API = ("AnimateResult", "BatchResult", "Evaluation", "FaceTrack", "LookLatent", "animate", "batch", "evaluate",
        "load_generator", "make_config", "project", "render", "track")

__all__ = ["PRESETS", "AnimateConfig", "AnimateResult", "BatchResult", "Evaluation", "FaceTrack", "LandmarkConfig",
           "LookLatent", "LossWeights", "Schedule", "StylePuppetError", "TrackConfig", "animate", "batch", "evaluate",
           "load_generator", "make_config", "preset", "project", "render", "track"]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module("stylepuppet.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stylepuppet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
