"""Image conversions and viewing marks shared by the pipeline, the evaluation and the command line.

Generator images are tensors [N, 3, R, R] in [-1, 1]; frames are uint8 arrays [H, W, 3]; landmark
nets and look metrics take [0, 1]. Marks are for viewing only: never draw on an image that feeds a
loss or a landmark network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator images [N, 3, R, R] in [-1, 1] -> uint8 [N, R, R, 3], rounded as NVIDIA's generate.py."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 frame [R, R, 3] -> [1, 3, R, R] in [-1, 1]."""
    return torch.from_numpy(frame.copy()).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator range [-1, 1] -> [0, 1], the range landmark nets and the look metrics take."""
    return (images + 1) * 0.5


def upscale(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB ``frame`` enlarged (bicubic) so its shorter side is at least ``size``; larger frames as they are.

    Bicubic, not nearest: a 64² face enlarged 4x then reads as a face rather than as 4-pixel blocks, in the
    videos and for the face detectors and the dlib judge alike (detectors miss small faces).
    """
    h, w = frame.shape[:2]
    if min(h, w) >= size:
        return np.ascontiguousarray(frame)
    scale = size / min(h, w)
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))


def labelled_row(panels: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Panels of one height side by side under a dark strip that names each one (centred over it), for a
    person to read which panel is which (the strip's height keeps the frame's height even, as H.264 needs)."""
    height = panels[0].shape[0]
    if any(p.shape[0] != height for p in panels) or len(panels) != len(labels):
        raise ValueError("one label per panel, and panels of one height")
    font = ImageFont.load_default(size=max(10, height // 20))
    strip = 2 * ((font.size + 8) // 2)
    row = Image.new("RGB", (sum(p.shape[1] for p in panels), strip + height), (24, 24, 24))
    pen = ImageDraw.Draw(row)
    x = 0
    for panel, label in zip(panels, labels):
        row.paste(Image.fromarray(np.ascontiguousarray(panel)), (x, strip))
        pen.text((x + panel.shape[1] / 2, strip / 2), label, fill=(235, 235, 235), font=font, anchor="mm")
        x += panel.shape[1]
    return np.asarray(row)


def draw_points(frame: np.ndarray, points: np.ndarray, *, colour: tuple[int, int, int] = (0, 255, 0),
                radius: float = 1.5, lines: Iterable[Sequence[int]] = ()) -> np.ndarray:
    """A copy of ``frame`` (uint8 RGB) with a dot at each of ``points`` [P, 2] and, for each index chain in
    ``lines``, a polyline through those points."""
    canvas = Image.fromarray(np.ascontiguousarray(frame))
    pen = ImageDraw.Draw(canvas)
    points = np.asarray(points, dtype=np.float64)
    for chain in lines:
        pen.line([tuple(p) for p in points[list(chain)]], fill=colour, width=1)
    for x, y in points:
        pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(canvas, dtype=np.uint8)


def stamp_untrained(frame: np.ndarray) -> np.ndarray:
    """Write "UNTRAINED" across the top of a frame, so nobody mistakes such output for a result."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    size = max(8, frame.shape[1] // 8)
    font = ImageFont.load_default(size=size)
    draw.rectangle([0, 0, frame.shape[1], size + 4], fill=(200, 0, 0))
    draw.text((2, 1), "UNTRAINED", fill=(255, 255, 255), font=font)
    return np.asarray(img)
