"""The independent judge: dlib's HOG face detector, 68-point shape predictor and face descriptor.

None of these networks is in any loss, so what they see on the outputs is evidence that the face
moved, not that the loss network was fooled. The model files come with the face-recognition-models
distribution (:func:`stylepuppet.face.detect.dlib_models_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from stylepuppet.errors import WeightsError
from stylepuppet.face.detect import PREDICTOR_FILE, dlib_models_dir

DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def upscale(frame: np.ndarray, size: int) -> np.ndarray:
    """A uint8 RGB frame upscaled (bicubic) so its shorter side is at least ``size``; larger ones as they are."""
    h, w = frame.shape[:2]
    if min(h, w) >= size:
        return np.ascontiguousarray(frame)
    scale = size / min(h, w)
    return np.asarray(Image.fromarray(frame).resize((round(w * scale), round(h * scale)), Image.BICUBIC))


@dataclass
class FrameMeasures:
    """What the judge saw in a sequence of T frames (rows of NaN where no face was found)."""

    points: np.ndarray  # [T, 68, 2] in the pixels of the judged (possibly upscaled) frames
    found: np.ndarray  # [T] bool
    descriptors: np.ndarray | None  # [T, 128]

    @property
    def missed(self) -> int:
        return int((~self.found).sum())


class DlibJudge:
    """Detect, place 68 points and describe faces with dlib; frames smaller than ``size`` are upscaled.

    Small outputs (a 64² DCGAN face) are upscaled to ``size``² before detection: the HOG detector's
    smallest face is ~80 px, and judging all outputs at one size keeps the numbers comparable.
    """

    def __init__(self, size: int = 256, models_dir: Path | None = None) -> None:
        folder = models_dir or dlib_models_dir()
        for name in (PREDICTOR_FILE, DESCRIPTOR_MODEL):
            if not (folder / name).is_file():
                raise WeightsError(f"dlib model {name} missing from {folder}; reinstall face-recognition-models")
        self._dlib = dlib
        self.size = size
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        self.encoder = dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_MODEL))

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The frame as judged: uint8 RGB, upscaled so its shorter side is at least ``size``."""
        return upscale(frame, self.size)

    def measure(self, frames, describe: bool = False) -> FrameMeasures:
        """Points (the largest face per frame), detection mask and optional descriptors for each frame."""
        points, found, descriptors = [], [], []
        for frame in frames:
            image = self.prepare(frame)
            rects = self.detector(image, 0)
            if not rects:
                points.append(np.full((68, 2), np.nan))
                found.append(False)
                if describe:
                    descriptors.append(np.full(128, np.nan))
                continue
            rect = max(rects, key=lambda r: r.area())
            shape = self.shape_predictor(image, rect)
            points.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
            found.append(True)
            if describe:
                descriptors.append(np.array(self.encoder.compute_face_descriptor(image, shape), dtype=np.float64))
        return FrameMeasures(points=np.stack(points) if points else np.zeros((0, 68, 2)),
                             found=np.array(found, dtype=bool),
                             descriptors=np.stack(descriptors) if describe and descriptors else None)
