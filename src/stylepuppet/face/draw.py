"""Landmark drawing for previews only: never draw on an image that feeds a loss or a landmark network."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from stylepuppet.landmarks.scheme import GROUPS

#: Closed outlines are joined back to their first point.
CLOSED = frozenset({"right_eye", "left_eye", "outer_lip", "inner_lip"})


def draw_landmarks(image: np.ndarray, points: np.ndarray, *, colour: tuple[int, int, int] = (0, 255, 0),
                   radius: float = 1.5, lines: bool = True) -> np.ndarray:
    """A copy of ``image`` (uint8 RGB) with 68 points [68, 2] drawn as dots joined group by group."""
    canvas = Image.fromarray(np.ascontiguousarray(image))
    pen = ImageDraw.Draw(canvas)
    points = np.asarray(points, dtype=np.float64)
    if lines:
        for name, idx in GROUPS.items():
            chain = [tuple(p) for p in points[list(idx)]]
            if name in CLOSED:
                chain.append(chain[0])
            pen.line(chain, fill=colour, width=1)
    for x, y in points:
        pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(canvas, dtype=np.uint8)
