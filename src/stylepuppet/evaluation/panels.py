"""evaluation.mp4: the driver's face | the output, each with the 68 points dlib judged them by.

The driver panel is a fixed square around the driver's face over the whole clip, kept inside the
picture: inside the frame and off any uniform black border the clip carries (d0 has 27 black rows at
the bottom of every frame), shrunk to the picture's shorter side when the face needs more. The output
panel shows the output with a margin around it, so a point dlib put off the output shows off it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stylepuppet.evaluation.figures import JUDGE_SIZE, Evaluation
from stylepuppet.images import draw_points, labelled_row
from stylepuppet.landmarks.framing import resize_points
from stylepuppet.landmarks.scheme import OUTLINES
from stylepuppet.video import VideoWriter

#: Side of each panel (the size outputs are judged at).
PANEL = 256
#: Output panel: the output fills the middle, this many pixels of margin on each side.
MARGIN = 32
#: A border row or column is black when no pixel of the first frames is brighter than this.
BLACK = 16
#: Frames the black borders are measured on.
BORDER_FRAMES = 5
#: The driver panel's side, in units of the larger extent of the face's points (room for hair and chin).
FACE_ROOM = 1.6
BACKGROUND = (48, 48, 48)


def picture_box(frames: Sequence[np.ndarray], black: int = BLACK) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end-exclusive: the frames' picture without the uniform near-black rows and columns
    at their edges, measured on the first :data:`BORDER_FRAMES` frames (the whole frame if all is black)."""
    brightest = np.max(np.stack(list(frames[:BORDER_FRAMES])), axis=(0, 3))
    rows = np.flatnonzero(brightest.max(axis=1) > black)
    cols = np.flatnonzero(brightest.max(axis=0) > black)
    if not rows.size or not cols.size:
        return 0, 0, brightest.shape[1], brightest.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def face_window(points: np.ndarray, picture: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """A fixed square (x0, y0, side) around the face of points [T, 68, 2] over the whole clip, inside
    ``picture`` (x0, y0, x1, y1): :data:`FACE_ROOM` times the face's median extent, centred on it, shrunk
    to the picture's shorter side and moved inside it where the face sits near an edge."""
    px0, py0, px1, py1 = picture
    room = float(min(px1 - px0, py1 - py0))
    found = points[np.isfinite(points).all(axis=(1, 2))]
    if not len(found):
        return (px0 + px1 - room) / 2, (py0 + py1 - room) / 2, room
    lo = np.median(found.min(axis=1), axis=0)
    hi = np.median(found.max(axis=1), axis=0)
    centre = (lo + hi) / 2
    side = min(FACE_ROOM * float(np.max(hi - lo)), room)
    x0 = float(np.clip(centre[0] - side / 2, px0, px1 - side))
    y0 = float(np.clip(centre[1] - side / 2, py0, py1 - side))
    return x0, y0, side


def _marked(panel: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``panel`` with dlib's points (in its pixels) and outlines, or a note where no face was found."""
    if np.isfinite(points).all():
        return draw_points(panel, points, radius=1.5, lines=OUTLINES)
    img = Image.fromarray(panel)
    ImageDraw.Draw(img).text((4, 4), "no face found", fill=(255, 0, 0))
    return np.asarray(img)


def driver_panel(frame: np.ndarray, points: np.ndarray, window: tuple[float, float, float],
                 judged_scale: float) -> np.ndarray:
    """``frame`` cut to ``window`` at PANEL², with ``points`` (in pixels of the frame scaled by ``judged_scale``)."""
    x0, y0, side = window
    img = Image.fromarray(frame).transform((PANEL, PANEL), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side),
                                           Image.Resampling.BICUBIC)
    # pixel-centre convention: judged pixel p is frame pixel (p + 0.5) / judged_scale - 0.5
    frame_points = resize_points(points, judged_scale, 1.0) - np.array([x0, y0])
    return _marked(np.asarray(img), resize_points(frame_points, side, PANEL))


def output_panel(frame: np.ndarray, points: np.ndarray, judged_side: int) -> np.ndarray:
    """The square output ``frame`` in the middle of a PANEL² panel with a :data:`MARGIN`, and ``points`` (in
    pixels of the output as judged, ``judged_side`` wide) where they fall, off the output included."""
    inner = PANEL - 2 * MARGIN
    img = Image.new("RGB", (PANEL, PANEL), BACKGROUND)
    img.paste(Image.fromarray(frame).resize((inner, inner), Image.Resampling.BICUBIC), (MARGIN, MARGIN))
    return _marked(np.asarray(img), resize_points(points, judged_side, inner) + MARGIN)


def write_side_by_side(path: str | Path, driver_frames: Sequence[np.ndarray], outputs: np.ndarray,
                       evaluation: Evaluation, fps: float, judge_size: int = JUDGE_SIZE) -> Path:
    """driver (face window) | output, each PANEL², with dlib's points as judged; returns the path."""
    window = face_window(evaluation.driver.points, picture_box(driver_frames))
    driver_scale = max(1.0, judge_size / min(driver_frames[0].shape[:2]))
    judged_side = max(outputs.shape[1], judge_size)
    labels = ("driver, dlib's points", "output, dlib's points")
    with VideoWriter(path, fps) as writer:
        for t, frame in enumerate(driver_frames):
            left = driver_panel(frame, evaluation.driver.points[t], window, driver_scale)
            right = output_panel(outputs[t], evaluation.output.points[t], judged_side)
            writer.write(labelled_row([left, right], labels))
    return Path(path)
