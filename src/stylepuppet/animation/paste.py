"""Paste-back: the animated face put back into the whole picture it stands for.

Keep-identity pastes into the look image (the portrait stays, its face moves); on request either mode
pastes into the driving video's frames. Where G's square output lies in the picture is a quad in the
picture's pixels: the quad the look was aligned by (``look_quad``), or per driving frame the driver's
smoothed track quad carried through the map from G's face onto the driver's (``paste_quads``, see
:func:`~stylepuppet.animation.targets.build_targets`), so the pasted face moves as smoothly as the
track. Only the face is pasted (the convex hull of its outline, where G's landmarks should be in that
frame), with a soft edge and its colour matched to the skin round it
(:func:`~stylepuppet.face.align.paste_back`); the picture outside it is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylepuppet.config import PasteInto
from stylepuppet.errors import ConfigError, MediaError
from stylepuppet.face.align import paste_back, quad_transform
from stylepuppet.video import load_image, open_frames


@dataclass(frozen=True)
class PasteData:
    """What paste-back needs of a run beside its latents: the source files, where G's output lies in them
    and the face's outline in G's output per driving frame (stored in ``latents.npz`` under ``paste/``)."""

    driving: str
    look: str  # "" without a look image
    look_quad: np.ndarray | None  # [4, 2] look-image pixels
    paste_quads: np.ndarray  # [T, 4, 2] driving-frame pixels
    outlines: np.ndarray  # [T, K, 2] G's output pixels

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"paste/driving": np.array(self.driving), "paste/look": np.array(self.look),
               "paste/quads": self.paste_quads, "paste/outlines": self.outlines}
        if self.look_quad is not None:
            out["paste/look_quad"] = self.look_quad
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PasteData | None:
        """The data saved by :meth:`arrays` (None when a file predates paste-back)."""
        if "paste/quads" not in arrays:
            return None
        return cls(str(arrays["paste/driving"]), str(arrays["paste/look"]), arrays.get("paste/look_quad"),
                   arrays["paste/quads"], arrays["paste/outlines"])


def lerp(values: np.ndarray, t: int, fraction: float) -> np.ndarray:
    """``values[t]`` blended towards ``values[t + 1]`` (held at the end), as sub-frames blend latents."""
    return values[t] * (1 - fraction) + values[min(t + 1, len(values) - 1)] * fraction


@dataclass(frozen=True)
class Picture:
    """The picture a run's face is pasted into: its frames (the look image, or the driving frames from
    ``start``), where G's output lies in each ([T, 4, 2]) and the face's outline in G's output ([T, K, 2])."""

    source: Path
    still: bool
    start: int
    quads: np.ndarray
    outlines: np.ndarray

    def frames(self) -> Iterator[np.ndarray]:
        """One background per driving frame (MediaError when the driving video ends early)."""
        count = len(self.quads)
        if self.still:
            image = load_image(self.source)
            for _ in range(count):
                yield image
            return
        done = 0
        with open_frames(self.source, start=self.start, max_frames=count) as frames:
            for frame in frames:
                yield frame
                done += 1
        if done < count:
            raise MediaError(f"{self.source} has {done} frames from frame {self.start} but the run has {count}")

    def paste(self, background: np.ndarray, face: np.ndarray, t: int, fraction: float = 0.0) -> np.ndarray:
        """G's output ``face`` [S, S, 3] of driving frame ``t`` (``fraction`` of the way to the next one, for
        sub-frames) pasted into ``background``."""
        size = face.shape[0]
        transform = quad_transform(lerp(self.quads, t, fraction), size)
        return paste_back(background, face, transform, outline=lerp(self.outlines, t, fraction), match_colour=True)


def picture(data: PasteData | None, into: PasteInto, start: int) -> Picture:
    """The picture ``into`` (look or driving) of a run's paste data; ConfigError when the run cannot give it."""
    if data is None:
        raise ConfigError("this run was made before paste-back existed; rerun it with --restart to paste back")
    count = len(data.paste_quads)
    if into == "look":
        if data.look_quad is None or not data.look:
            raise ConfigError("paste_into: this run has no look image; paste into the driving video with "
                              "--paste-into driving")
        source, still, quads = Path(data.look), True, np.broadcast_to(data.look_quad, (count, 4, 2))
    else:
        source, still, quads = Path(data.driving), False, data.paste_quads
    if not source.exists():
        raise MediaError(f"paste-back needs {source}, which no longer exists; put it back there")
    return Picture(source, still, start, np.asarray(quads, dtype=np.float64),
                   np.asarray(data.outlines, dtype=np.float64))
