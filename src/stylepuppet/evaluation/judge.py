"""The independent judge: dlib's HOG face detector, 68-point shape predictor and face descriptor.

None of these networks is in any loss, so what they see on the outputs is evidence that the face
moved, not that the loss network was fooled. The model files come with the face-recognition-models
distribution (:func:`stylepuppet.face.detect.dlib_models_dir`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np

from stylepuppet.errors import WeightsError
from stylepuppet.face.detect import PREDICTOR_FILE, dlib_models_dir
from stylepuppet.images import upscale

DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


@dataclass
class FrameMeasures:
    """What the judge saw in a sequence of T frames (rows of NaN where no face was found)."""

    points: np.ndarray  # [T, 68, 2] in the pixels of the judged (possibly upscaled) frames
    found: np.ndarray  # [T] bool
    descriptors: np.ndarray | None  # [T, 128]

    @property
    def missed(self) -> int:
        return int((~self.found).sum())


def steady_box(boxes: np.ndarray) -> np.ndarray:
    """One face box [4] (left, top, right, bottom) for a clip of one unmoving face: the median of its
    per-frame boxes [N, 4]. HOG boxes come from discrete pyramid levels, so the box of a face that does
    not move jumps between sizes (180 and 216 px on d3 runs' upscaled 64² DCGAN faces) and the shape
    predictor, which starts from the box, follows those jumps."""
    return np.round(np.median(np.asarray(boxes, dtype=np.float64), axis=0))


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
        self.size = size
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        self.encoder = dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_MODEL))

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The frame as judged: uint8 RGB, upscaled (bicubic) so its shorter side is at least ``size``."""
        return upscale(frame, self.size)

    def measure(self, frames: Iterable[np.ndarray], describe: bool = False, steady: bool = False) -> FrameMeasures:
        """Points (the largest face per frame), detection mask and optional descriptors for each frame.

        ``steady``: the frames show one face that stays in place (a generator's aligned outputs). A frame
        still counts as a face only where the detector finds one, but every such frame's points are
        fitted from one box, :func:`steady_box` of the clip's detections, so the points move with the
        face and not with the detector's box sizes.
        """
        images: list[np.ndarray] = []
        boxes: list[np.ndarray | None] = []
        for frame in frames:
            image = self.prepare(frame)
            images.append(image)
            rects = self.detector(image, 0)
            rect = max(rects, key=lambda r: r.area()) if rects else None
            boxes.append(None if rect is None else np.array([rect.left(), rect.top(), rect.right(), rect.bottom()]))
        found = np.array([b is not None for b in boxes], dtype=bool)
        if steady and found.any():
            box = steady_box(np.stack([b for b in boxes if b is not None]))
            boxes = [box if b is not None else None for b in boxes]
        points = np.full((len(images), 68, 2), np.nan)
        descriptors = np.full((len(images), 128), np.nan) if describe else None
        for t, (image, box) in enumerate(zip(images, boxes)):
            if box is None:
                continue
            shape = self.shape_predictor(image, dlib.rectangle(*(int(v) for v in box)))
            points[t] = [(p.x, p.y) for p in shape.parts()]
            if descriptors is not None:
                descriptors[t] = self.encoder.compute_face_descriptor(image, shape)
        return FrameMeasures(points=points, found=found, descriptors=descriptors)
