"""Face boxes and 68 iBUG landmarks in an image, with a choice of landmark backend.

Both backends find face boxes with dlib's HOG detector (offline, built into dlib-bin) and differ in
how they fit the 68 points inside a box: ``dlib`` uses the ERT shape predictor shipped in
face-recognition-models, ``fan`` uses the 2DFAN4 heat-map network (:mod:`stylepuppet.landmarks.fan`).

Besides ``detect(image)`` every detector offers the two steps separately, ``find_boxes`` (optionally
inside a region, for a video track that knows where the face was) and ``fit`` (landmarks in a given
box), so :mod:`stylepuppet.face.track` can follow one face without running a whole-frame search on
every frame. All coordinates are pixel-index coordinates (the centre of pixel ``i`` is ``i``).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import dlib
import numpy as np
import torch
from PIL import Image

from stylepuppet.errors import ConfigError, NoFaceError, WeightsError
from stylepuppet.landmarks.fan import FAN, load_fan
from stylepuppet.landmarks.net import landmarks_in_image
from stylepuppet.weights import DEFAULTS

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

BACKENDS = ("dlib", "fan")


@dataclass(frozen=True)
class Face:
    """One face: ``box`` [4] (x1, y1, x2, y2, float), ``points`` [68, 2] float32 (x, y), detector ``score``."""

    box: np.ndarray
    points: np.ndarray
    score: float = 0.0

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


@dataclass(frozen=True)
class Box:
    """A detector box [4] (x1, y1, x2, y2) in image pixels and its score."""

    box: np.ndarray
    score: float = 0.0


@runtime_checkable
class LandmarkDetector(Protocol):
    """What the face track needs from a backend."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces of a uint8 RGB image [H, W, 3], largest first."""

    def find_boxes(self, image: np.ndarray, region: np.ndarray | None = None) -> list[Box]:
        """Face boxes in the whole image, or only near ``region`` [4] (a previous face box), largest first."""

    def fit(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 landmarks [68, 2] float32 of the face framed by ``box`` [4]."""


# ------------------------------------------------------------------------------------------------ helpers


def check_image(image: np.ndarray) -> np.ndarray:
    """Return a C-contiguous uint8 [H, W, 3] array (what dlib accepts) or raise ValueError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be uint8 RGB [H, W, 3], got {desc}")
    return np.ascontiguousarray(image)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes [4] (x1, y1, x2, y2)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def box_width(box: np.ndarray) -> float:
    return float(box[2] - box[0])


def expand_box(box: np.ndarray, margin: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer pixel window (x0, y0, x1, y1), end-exclusive, around ``box`` grown by ``margin`` of its
    width on every side and clipped to an image of ``size`` (w, h)."""
    m = margin * max(box_width(box), box[3] - box[1], 1.0)
    x0 = int(np.clip(np.floor(box[0] - m), 0, size[0] - 1))
    y0 = int(np.clip(np.floor(box[1] - m), 0, size[1] - 1))
    x1 = int(np.clip(np.ceil(box[2] + m) + 1, x0 + 1, size[0]))
    y1 = int(np.clip(np.ceil(box[3] + m) + 1, y0 + 1, size[1]))
    return x0, y0, x1, y1


def resample_window(image: np.ndarray, window: tuple[int, int, int, int],
                    scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The window (x0, y0, x1, y1) of ``image`` resized by ``scale`` (bilinear, antialiased when shrinking).

    Returns the resized pixels and ``(sx, sy, x0, y0)``: a window pixel ``q`` is image pixel
    ``(q + 0.5) / s - 0.5 + origin`` (exact per-axis scales after rounding the size).
    """
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    out_w, out_h = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    patch = image[y0:y1, x0:x1]
    if (out_w, out_h) != (w, h):
        patch = np.asarray(Image.fromarray(patch).resize((out_w, out_h), Image.BILINEAR))
    return np.ascontiguousarray(patch), np.array([out_w / w, out_h / h, x0, y0], dtype=np.float64)


def window_to_image(points: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Map points [..., 2] from a :func:`resample_window` result back to image pixels."""
    sx, sy, x0, y0 = mapping
    out = np.empty_like(np.asarray(points, dtype=np.float64))
    out[..., 0] = (points[..., 0] + 0.5) / sx - 0.5 + x0
    out[..., 1] = (points[..., 1] + 0.5) / sy - 0.5 + y0
    return out


def image_to_window(points: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Inverse of :func:`window_to_image`."""
    sx, sy, x0, y0 = mapping
    out = np.empty_like(np.asarray(points, dtype=np.float64))
    out[..., 0] = (points[..., 0] - x0 + 0.5) * sx - 0.5
    out[..., 1] = (points[..., 1] - y0 + 0.5) * sy - 0.5
    return out


def dlib_models_dir() -> Path:
    """The folder of dlib model files that face-recognition-models ships, found without importing the package
    (its import needs ``pkg_resources``, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the dlib model files are missing; install them with "
                           "`pip install face-recognition-models`")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def predictor_path() -> Path:
    """The 68-point shape predictor of face-recognition-models."""
    path = dlib_models_dir() / PREDICTOR_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall it with "
                           "`pip install --force-reinstall face-recognition-models`")
    return path


# ------------------------------------------------------------------------------------------------ detectors


class HogDetector:
    """dlib's HOG face boxes; subclasses add the landmark fit.

    Whole-image search runs on a copy whose longer side is at most ``max_side`` (HOG cost grows with
    the pixel count; faces in talking-head video are large) and, only if that finds nothing, again at
    full resolution upsampled ``upsample`` times (HOG's window is 80 px, so small faces need it).
    A search near a known box resamples a window around it so the face is ``region_face_px`` wide:
    on 512² video that is ~6x fewer pixels than the whole frame (measured 3-4 ms against 20 ms).
    """

    name = "hog"

    def __init__(self, *, upsample: int = 0, max_side: int = 640, region_face_px: int = 100,
                 region_margin: float = 0.5) -> None:
        if upsample < 0:
            raise ConfigError(f"upsample must be >= 0, got {upsample}")
        if max_side < 80 or region_face_px < 80:
            raise ConfigError("max_side and region_face_px must be at least 80 (the HOG window)")
        self.upsample = int(upsample)
        self.max_side = int(max_side)
        self.region_face_px = int(region_face_px)
        self.region_margin = float(region_margin)
        self._hog = dlib.get_frontal_face_detector()

    def _run(self, pixels: np.ndarray, upsample: int) -> list[Box]:
        rects, scores, _ = self._hog.run(pixels, upsample, 0.0)
        boxes = [Box(np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64), float(s))
                 for r, s in zip(rects, scores)]
        return sorted(boxes, key=lambda b: -box_width(b.box))

    def _search(self, image: np.ndarray, window: tuple[int, int, int, int], scale: float,
                upsample: int = 0) -> list[Box]:
        pixels, mapping = resample_window(image, window, scale)
        found = self._run(pixels, upsample)
        # A dlib box spans pixels left..right inclusive: map its pixel indices like points.
        return [Box(window_to_image(b.box.reshape(2, 2), mapping).reshape(4), b.score) for b in found]

    def find_boxes(self, image: np.ndarray, region: np.ndarray | None = None) -> list[Box]:
        image = check_image(image)
        h, w = image.shape[:2]
        if region is not None:
            window = expand_box(np.asarray(region, dtype=np.float64), self.region_margin, (w, h))
            scale = self.region_face_px / max(box_width(region), 1.0)
            return self._search(image, window, scale)
        full = (0, 0, w, h)
        scale = min(1.0, self.max_side / max(w, h))
        found = self._search(image, full, scale)
        if not found and (scale < 1.0 or self.upsample > 0):
            found = self._search(image, full, 1.0, self.upsample)
        return found

    def fit(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Face]:
        image = check_image(image)
        return [Face(b.box, self.fit(image, b.box), b.score) for b in self.find_boxes(image)]


@functools.lru_cache(maxsize=2)
def _load_predictor(path: str, mtime_ns: int) -> Any:
    """The predictor file read once per process (100 MB, ~1.5 s); ``mtime_ns`` makes a changed file reload."""
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise WeightsError(f"cannot load dlib shape predictor {path} ({exc}); give {PREDICTOR_FILE}") from None


class DlibDetector(HogDetector):
    """HOG boxes + dlib's 68-point ERT shape predictor (face-recognition-models).

    dlib returns whole-pixel points; faces narrower than ``fit_face_px`` are fitted on an upsampled
    window around the box, which gives sub-pixel points (measured on d0/d3: quad jitter of the raw
    track 0.0041 -> 0.0036 at 400 px, for ~3 ms a frame).
    """

    name = "dlib"

    def __init__(self, *, fit_face_px: int = 400, predictor: str | Path | None = None, **hog: Any) -> None:
        super().__init__(**hog)
        path = Path(predictor) if predictor is not None else predictor_path()
        if not path.is_file():
            raise WeightsError(f"dlib shape predictor {path} does not exist; give the path of "
                               f"{PREDICTOR_FILE}")
        self._predictor = _load_predictor(str(path.resolve()), path.stat().st_mtime_ns)
        self.fit_face_px = int(fit_face_px)

    def _predict(self, pixels: np.ndarray, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self._predictor(pixels, dlib.rectangle(x1, y1, x2, y2))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def fit(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        image = check_image(image)
        box = np.asarray(box, dtype=np.float64)
        scale = self.fit_face_px / max(box_width(box), 1.0)
        if scale <= 1.0:
            return self._predict(image, box).astype(np.float32)
        window = expand_box(box, 0.25, (image.shape[1], image.shape[0]))
        pixels, mapping = resample_window(image, window, scale)
        local = image_to_window(box.reshape(2, 2), mapping).reshape(4)
        return window_to_image(self._predict(pixels, local), mapping).astype(np.float32)


class FanDetector(HogDetector):
    """HOG boxes + the 2DFAN4 heat-map network, framed the face-alignment way around each box.

    ``weights`` is a FAN file, a weights-registry name, or an already built
    :class:`~stylepuppet.landmarks.fan.FAN` (e.g. randomly initialised for tests).
    """

    name = "fan"

    def __init__(self, weights: Any = DEFAULTS["fan"], *, device: str = "cpu", **hog: Any) -> None:
        super().__init__(**hog)
        self.device = torch.device(device)
        self.net = weights if isinstance(weights, FAN) else load_fan(weights, device=self.device)
        self.net = self.net.to(self.device).eval()

    def fit(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        image = check_image(image)
        box = np.asarray(box, dtype=np.float64)
        # Only the framed square (plus a margin for resampling) goes to torch, not the whole frame.
        centre, side = self.net.framing(torch.as_tensor(box[None], dtype=torch.float32))
        half = float(side[0]) / 2
        c = centre[0].numpy().astype(np.float64)
        frame = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
        x0, y0, x1, y1 = expand_box(frame, 0.05, (image.shape[1], image.shape[0]))
        # crop_square box-filters by int(side / input_size) from pixel 0: keep the patch on that grid.
        step = max(1, int(float(side[0]) / self.net.input_size))
        x0, y0 = x0 - x0 % step, y0 - y0 % step
        patch = torch.from_numpy(image[y0:y1, x0:x1]).to(self.device).permute(2, 0, 1)[None].float() / 255
        local = torch.as_tensor((box - np.array([x0, y0, x0, y0]))[None], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            points = landmarks_in_image(self.net, patch, local)[0].cpu().numpy().astype(np.float64)
        return (points + np.array([x0, y0])).astype(np.float32)


def make_detector(name: str, **options: Any) -> LandmarkDetector:
    """The landmark backend called ``name`` ("dlib" or "fan"), built with backend options."""
    if name == "dlib":
        return DlibDetector(**options)
    if name == "fan":
        return FanDetector(**options)
    raise ConfigError(f"unknown landmark backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def detect_image(image: np.ndarray, detector: LandmarkDetector, *, what: str = "image") -> Face:
    """The largest face of one image, or NoFaceError naming ``what``."""
    faces = detector.detect(image)
    if not faces:
        raise NoFaceError(f"no face found in {what}; use an image with a clear, roughly frontal face")
    return max(faces, key=lambda f: f.area)


__all__ = [
    "BACKENDS",
    "Box",
    "DlibDetector",
    "Face",
    "FanDetector",
    "HogDetector",
    "LandmarkDetector",
    "box_iou",
    "detect_image",
    "dlib_models_dir",
    "make_detector",
    "predictor_path",
]
