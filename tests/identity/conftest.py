"""Real faces for the identity tests: portraits and video frames of ../shared/media with dlib's landmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from stylepuppet.identity.dlib_resnet import shipped_model_path
from stylepuppet.video import load_image, open_frames

dlib = pytest.importorskip("dlib")

#: (file, frame indices): the three portraits and frames of five clips (several people, mouth states,
#: sizes; s1 and d13 frame their faces large enough for dlib's pyramid step).
FACE_SOURCES = [("s1.jpg", [0]), ("s3.jpg", [0]), ("s5.jpg", [0]), ("d0.mp4", [0, 40]), ("d3.mp4", [0, 120]),
                ("d11.mp4", [100]), ("d13.mp4", [50]), ("d18.mp4", [60])]


@dataclass(frozen=True)
class RealFace:
    label: str
    image: np.ndarray  # uint8 RGB [H, W, 3]
    shape68: object  # dlib.full_object_detection
    shape5: object

    @staticmethod
    def points(shape) -> np.ndarray:
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@pytest.fixture(scope="session")
def dlib_face_models() -> dict:
    models = Path(shipped_model_path()).parent
    return {"detector": dlib.get_frontal_face_detector(),
            "shape68": dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat")),
            "shape5": dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
            "descriptor": dlib.face_recognition_model_v1(str(shipped_model_path()))}


@pytest.fixture(scope="session")
def real_faces(media_dir, dlib_face_models) -> list[RealFace]:
    """The largest face of each source frame, with dlib's 68- and 5-point shapes."""
    out = []
    for name, frames in FACE_SOURCES:
        path = media_dir / name
        if path.suffix == ".jpg":
            images = [load_image(path)]
        else:
            with open_frames(path, max_frames=max(frames) + 1) as source:
                images = [f for i, f in enumerate(source) if i in frames]
        for index, image in zip(frames, images):
            image = np.ascontiguousarray(image)
            boxes = dlib_face_models["detector"](image, 1 if max(image.shape) <= 800 else 0)
            assert boxes, f"dlib finds no face in {name}:{index}"
            box = max(boxes, key=lambda r: r.area())
            out.append(RealFace(f"{name}:{index}", image, dlib_face_models["shape68"](image, box),
                                dlib_face_models["shape5"](image, box)))
    return out
