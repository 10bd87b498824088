"""The 68-point iBUG landmark scheme, its named groups, and per-group weights.

Every landmark backend (dlib, FAN, MediaPipe mesh) reports points under these group names, so a
weight such as ``mouth=5,eyes=0`` means the same whichever network is in the loss. This module
imports nothing of stylepuppet but its errors: the config validates group weights against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from stylepuppet.errors import ConfigError

NUM_POINTS = 68

#: Non-overlapping groups (0-based, "right/left" from the subject's point of view, as in 300-W).
GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "right_eyebrow": range(17, 22),
    "left_eyebrow": range(22, 27),
    "nose_bridge": range(27, 31),
    "lower_nose": range(31, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "outer_lip": range(48, 60),
    "inner_lip": range(60, 68),
}

#: Each point's mirror image under a left-right flip of the face (the jaw, brows, eyes, nostrils and
#: lips swap sides; points on the midline map to themselves).
MIRROR = np.array([
    *range(16, -1, -1),  # jaw
    *range(26, 21, -1), *range(21, 16, -1),  # eyebrows
    27, 28, 29, 30, 35, 34, 33, 32, 31,  # nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,  # eyes
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lip
], dtype=np.int64)

#: The groups drawn as closed outlines (joined back to their first point).
CLOSED = frozenset({"right_eye", "left_eye", "outer_lip", "inner_lip"})
#: Index chains that draw the 68 points as outlines, group by group (for previews).
OUTLINES: tuple[tuple[int, ...], ...] = tuple(
    (*idx, idx[0]) if name in CLOSED else tuple(idx) for name, idx in GROUPS.items())

#: Convenience names that stand for several groups.
ALIASES: dict[str, tuple[str, ...]] = {
    "face_oval": ("jaw",),
    "eyebrows": ("right_eyebrow", "left_eyebrow"),
    "eyes": ("right_eye", "left_eye"),
    "nose": ("nose_bridge", "lower_nose"),
    "mouth": ("outer_lip", "inner_lip"),
    "lips": ("outer_lip", "inner_lip"),
    "all": tuple(GROUPS),
}

#: The original method's group weights (jaw 0.05, eyebrows 1, nose bridge 0.1, lower nose 1,
#: eyes 1, lips 5).
SEED_GROUP_WEIGHTS: dict[str, float] = {
    "jaw": 0.05,
    "right_eyebrow": 1.0,
    "left_eyebrow": 1.0,
    "nose_bridge": 0.1,
    "lower_nose": 1.0,
    "right_eye": 1.0,
    "left_eye": 1.0,
    "outer_lip": 5.0,
    "inner_lip": 5.0,
}


def expand_group(name: str) -> tuple[str, ...]:
    """Return the base groups a name stands for, or raise a ConfigError listing valid names."""
    if name in GROUPS:
        return (name,)
    if name in ALIASES:
        return ALIASES[name]
    valid = ", ".join([*GROUPS, *ALIASES])
    raise ConfigError(f"unknown landmark group {name!r}; valid names: {valid}")


def parse_group_weights(spec: str | Mapping[str, float], base: Mapping[str, float] | None = None) -> dict[str, float]:
    """Resolve ``"mouth=5,eyes=0"`` (or a mapping) into a weight for every base group.

    Entries are applied left to right over ``base`` (default: all 1), so later ones win.
    """
    weights = dict.fromkeys(GROUPS, 1.0) if base is None else {g: float(base.get(g, 1.0)) for g in GROUPS}
    if isinstance(spec, str):
        items: list[tuple[str, str | float]] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise ConfigError(f"group weight {part!r} is not of the form name=value (e.g. mouth=5,eyes=0)")
            key, value = part.split("=", 1)
            items.append((key.strip(), value.strip()))
    else:
        items = list(spec.items())
    for key, value in items:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"group weight for {key!r} must be a number, got {value!r}") from None
        if not np.isfinite(number) or number < 0:
            raise ConfigError(f"group weight for {key!r} must be a finite number >= 0, got {value!r}")
        for group in expand_group(key):
            weights[group] = number
    return weights


def point_weights(weights: Mapping[str, float], groups: Mapping[str, np.ndarray | range] = GROUPS,
                  num_points: int = NUM_POINTS, rest: float = 0.0) -> np.ndarray:
    """Per-point weight vector [num_points] from per-group weights; points in no group get ``rest``
    (a dense net's surface points: the mesh's cheeks, forehead, ...)."""
    out = np.full(num_points, rest, dtype=np.float32)
    for name, idx in groups.items():
        out[np.asarray(idx, dtype=np.int64)] = float(weights.get(name, 0.0))
    return out


def eye_centres(points: Any, groups: Mapping[str, Any] = GROUPS) -> tuple[Any, Any]:
    """Centres [..., 2] of the subject's right eye (image left) and left eye (image right) of points [..., P, 2]
    (a numpy array or a tensor), whose eyes are ``groups["right_eye"]`` and ``groups["left_eye"]``."""
    right = points[..., np.asarray(groups["right_eye"]), :].mean(axis=-2)
    left = points[..., np.asarray(groups["left_eye"]), :].mean(axis=-2)
    return right, left
