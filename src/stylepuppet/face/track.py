"""One face through a driving video: detect per frame, follow the same person, fill gaps, smooth, save.

The video is streamed (only the 68 points per frame are kept). Per frame, :class:`FaceFollower`
looks for the face near where it was (a HOG search in a window around the last box, ~6x cheaper
than a whole-frame search on 512² video) and fits the landmarks in a box derived from the previous
frame's landmarks; the window search still runs every frame, so a frame without a face is noticed
at once, and its box keeps the landmark box honest (see :class:`FaceFollower`). Frames without a
face are filled by linear interpolation between their neighbours (held at the ends) and counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stylepuppet import atomic
from stylepuppet.errors import MediaError, NoFaceError
from stylepuppet.face import metrics
from stylepuppet.face.align import AlignedCrop, align_crop, ffhq_quad, quad_transform, to_aligned
from stylepuppet.face.detect import Box, Face, LandmarkDetector, box_centre, box_iou, box_width, make_detector
from stylepuppet.face.smoothing import SmoothingSettings, as_settings, smooth_track
from stylepuppet.images import draw_points
from stylepuppet.landmarks.scheme import OUTLINES
from stylepuppet.video import VideoWriter, content_digest, open_frames

DEFAULT_SMOOTHING = SmoothingSettings()

#: Keys of track.npz, in order.
TRACK_KEYS = ("landmarks_raw", "detected", "landmarks", "quads", "fps", "size", "jitter_raw", "jitter", "lag",
              "smooth_landmarks", "smooth_centre", "smooth_shape")
#: Keys that say what a track was made from (absent in tracks written before they were recorded).
MADE_FROM_KEYS = ("source_digest", "start")


# ------------------------------------------------------------------------------------------------ following


def box_frame(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid [2] and RMS radius of a landmark set [68, 2]: the frame boxes are expressed in."""
    points = np.asarray(points, dtype=np.float64)
    centroid = points.mean(axis=0)
    radius = float(np.sqrt(((points - centroid) ** 2).sum(axis=1).mean()))
    return centroid, max(radius, 1e-6)


def box_relative(box: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A detector box described relative to its landmarks: centre offset and width, in RMS radii [3]."""
    centroid, radius = box_frame(points)
    return np.array([*(box_centre(box) - centroid) / radius, box_width(box) / radius])


def box_from_relative(relative: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`box_relative`: a square box [4] placed on ``points`` the way the detector would."""
    centroid, radius = box_frame(points)
    centre = centroid + relative[:2] * radius
    half = relative[2] * radius / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def choose_box(boxes: list[Box], previous: np.ndarray | None) -> Box:
    """The box of the person being followed: the largest when nobody is followed yet, else the one that
    overlaps ``previous`` most, or (no overlap, e.g. after a long gap) the nearest in units of its size."""
    if previous is None:
        return max(boxes, key=lambda b: box_width(b.box))
    overlaps = [box_iou(b.box, previous) for b in boxes]
    best = int(np.argmax(overlaps))
    if overlaps[best] > 0:
        return boxes[best]
    scale = max(box_width(previous), 1.0)
    return min(boxes, key=lambda b: float(np.linalg.norm(box_centre(b.box) - box_centre(previous))) / scale)


@dataclass
class FaceFollower:
    """Follows one face frame by frame; ``step(frame)`` returns it or None when it is not found.

    The landmark fit uses a box derived from the previous frame's landmarks rather than the fresh
    HOG box: HOG boxes snap to its scan grid and sizes, and that jumpiness passes straight into the
    landmarks. How a HOG box sits relative to its landmarks (``relation``) is learnt as a running
    average over the frames, so the derived box keeps the detector's framing. When the derived box
    and the HOG box disagree (IoU < ``min_iou``: a fast move, or a fit that went astray) the HOG box
    is used and the relation restarts.
    """

    detector: LandmarkDetector
    min_iou: float = 0.5
    relation_rate: float = 0.05
    previous: Face | None = None
    last_box: np.ndarray | None = None
    relation: np.ndarray | None = field(default=None, repr=False)

    def _find(self, frame: np.ndarray) -> Box | None:
        boxes: list[Box] = []
        if self.previous is not None:
            boxes = self.detector.find_boxes(frame, region=self.previous.box)
        if not boxes:
            boxes = self.detector.find_boxes(frame)
        return choose_box(boxes, self.last_box) if boxes else None

    def step(self, frame: np.ndarray) -> Face | None:
        found = self._find(frame)
        if found is None:
            self.previous = None
            return None
        rect, follows = found.box, False
        if self.previous is not None and self.relation is not None:
            derived = box_from_relative(self.relation, self.previous.points)
            follows = box_iou(derived, found.box) >= self.min_iou
            if follows:
                rect = derived
        points = np.asarray(self.detector.fit(frame, rect), dtype=np.float32)
        relative = box_relative(found.box, points)
        if follows and self.relation is not None:
            self.relation = self.relation + self.relation_rate * (relative - self.relation)
        else:
            self.relation = relative
        self.previous = Face(found.box, points, found.score)
        self.last_box = found.box
        return self.previous


# ------------------------------------------------------------------------------------------------ filling


def fill_missing(points: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Landmarks [T, P, 2] with undetected frames filled: linear between neighbours, held at the ends."""
    points = np.asarray(points, dtype=np.float64)
    detected = np.asarray(detected, dtype=bool)
    if not detected.any():
        raise ValueError("cannot fill a track without any detected frame")
    if detected.all():
        return points.copy()
    t = np.arange(points.shape[0])
    known = t[detected]
    flat = points.reshape(points.shape[0], -1)
    filled = np.stack([np.interp(t, known, flat[detected, k]) for k in range(flat.shape[1])], axis=1)
    return filled.reshape(points.shape)


# ------------------------------------------------------------------------------------------------ the track


@dataclass
class FaceTrack:
    """A face track: what the detector saw, the filled + smoothed landmarks and quads, and its figures.

    ``landmarks_raw`` [T, 68, 2] float32 (NaN where no face), ``detected`` [T] bool, ``landmarks``
    [T, 68, 2] (filled, smoothed), ``quads`` [T, 4, 2] (smoothed, source pixels), ``fps``, ``size``
    (width, height), ``jitter_raw`` (quads straight from the filled raw landmarks), ``jitter``
    (smoothed quads), ``lag`` (see :mod:`stylepuppet.face.metrics`), ``smoothing``; what it was made from:
    ``source_digest`` (the clip's :func:`~stylepuppet.video.content_digest`) and ``start`` (its first frame),
    None in tracks written before they were recorded.
    """

    landmarks_raw: np.ndarray
    detected: np.ndarray
    landmarks: np.ndarray
    quads: np.ndarray
    fps: float
    size: tuple[int, int]
    jitter_raw: float
    jitter: float
    lag: float
    smoothing: SmoothingSettings
    source_digest: str | None = None
    start: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.detected.shape[0])

    @property
    def num_detected(self) -> int:
        return int(self.detected.sum())

    @property
    def num_filled(self) -> int:
        return self.num_frames - self.num_detected

    @property
    def jitter_cut(self) -> float:
        """How many times smoothing reduced the jitter (inf when the smoothed quads do not wobble at all)."""
        return self.jitter_raw / self.jitter if self.jitter > 0 else float("inf")

    def summary(self) -> str:
        """One line for the end of a run."""
        return (f"{self.num_frames} frames, face found in {self.num_detected}, filled {self.num_filled}; "
                f"jitter {self.jitter_raw:.4f} -> {self.jitter:.4f} ({self.jitter_cut:.1f}x less), "
                f"lag {self.lag:.4f}")

    def first(self, count: int) -> FaceTrack:
        """The track of its first ``count`` frames (all of it when it is no longer)."""
        if self.num_frames <= count:
            return self
        return replace(self, landmarks_raw=self.landmarks_raw[:count], detected=self.detected[:count],
                                   landmarks=self.landmarks[:count], quads=self.quads[:count])

    def check_made_from(self, path: Path, driving: Path, digest: str, start: int, count: int,
                        size: tuple[int, int]) -> None:
        """MediaError unless this track (read from ``path``) was made from the clip ``driving`` (content
        ``digest``, frames of ``size``) from frame ``start`` and covers the ``count`` frames a run needs."""
        remake = f"make one with `stylepuppet track {driving} --start {start} -o {path}`, or leave --track out"
        if self.source_digest is None or self.start is None:
            raise MediaError(f"{path} does not record which video it was made from (an older stylepuppet wrote it); "
                             f"{remake}")
        if self.source_digest != digest:
            raise MediaError(f"{path} was made from another video than {driving}; {remake}")
        if self.start != start:
            raise MediaError(f"{path} starts at frame {self.start} of {driving.name}, but this run starts at frame "
                             f"{start}; {remake}")
        if tuple(self.size) != tuple(size):
            raise MediaError(f"{path} was made on {self.size[0]}x{self.size[1]} frames, but {driving.name} has "
                             f"{size[0]}x{size[1]}; {remake}")
        if self.num_frames < count:
            raise MediaError(f"{path} covers {self.num_frames} frames from frame {start}, but this run needs "
                             f"{count}; {remake}")

    def transforms(self, size: int) -> np.ndarray:
        """Per-frame 3x3 maps [T, 3, 3] from source pixels to ``size``² aligned-crop pixels."""
        return quad_transform(self.quads, size)

    def aligned_landmarks(self, size: int) -> np.ndarray:
        """The smoothed landmarks [T, 68, 2] in the coordinates of each frame's ``size``² aligned crop."""
        return to_aligned(self.landmarks, self.quads, size)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write track.npz atomically (temp file in the same folder, then renamed); makes missing folders.
        OutputError when it cannot be written."""
        path = Path(path)
        arrays = {
            "landmarks_raw": self.landmarks_raw.astype(np.float32),
            "detected": self.detected.astype(bool),
            "landmarks": self.landmarks.astype(np.float32),
            "quads": self.quads.astype(np.float32),
            "fps": np.float64(self.fps),
            "size": np.asarray(self.size, dtype=np.int64),
            "jitter_raw": np.float64(self.jitter_raw),
            "jitter": np.float64(self.jitter),
            "lag": np.float64(self.lag),
            "smooth_landmarks": np.float64(self.smoothing.landmarks),
            "smooth_centre": np.float64(self.smoothing.centre),
            "smooth_shape": np.float64(self.smoothing.shape),
        }
        if self.source_digest is not None and self.start is not None:
            arrays["source_digest"] = np.array(self.source_digest)
            arrays["start"] = np.int64(self.start)
        atomic.save_npz(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaceTrack:
        """Read a track.npz written by :meth:`save` (MediaError if missing or not a track)."""
        path = Path(path)
        if not path.is_file():
            raise MediaError(f"track file {path} does not exist; create it with `stylepuppet track`")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in TRACK_KEYS if k not in data.files]
                if missing:
                    raise MediaError(f"{path} is not a face track (missing {', '.join(missing)}); "
                                     "create it with `stylepuppet track`")
                d = {k: data[k] for k in TRACK_KEYS}
                made_from = ((str(data["source_digest"]), int(data["start"]))
                             if set(MADE_FROM_KEYS) <= set(data.files) else (None, None))
        except MediaError:
            raise
        except Exception as exc:  # zip/npy errors of a damaged file
            raise MediaError(f"cannot read track file {path} ({type(exc).__name__}); "
                             "create it again with `stylepuppet track`") from None
        return cls(
            landmarks_raw=d["landmarks_raw"], detected=d["detected"].astype(bool), landmarks=d["landmarks"],
            quads=d["quads"], fps=float(d["fps"]), size=(int(d["size"][0]), int(d["size"][1])),
            jitter_raw=float(d["jitter_raw"]), jitter=float(d["jitter"]), lag=float(d["lag"]),
            smoothing=SmoothingSettings(float(d["smooth_landmarks"]), float(d["smooth_centre"]),
                                        float(d["smooth_shape"])),
            source_digest=made_from[0], start=made_from[1],
        )


def build_track(landmarks_raw: np.ndarray, detected: np.ndarray, fps: float, size: tuple[int, int],
                smoothing: SmoothingSettings) -> FaceTrack:
    """Fill, smooth and measure a raw track [T, 68, 2] (NaN where ``detected`` is False)."""
    filled = fill_missing(landmarks_raw, detected)
    landmarks, quads = smooth_track(filled, smoothing)
    return FaceTrack(
        landmarks_raw=np.asarray(landmarks_raw, dtype=np.float32), detected=np.asarray(detected, dtype=bool),
        landmarks=landmarks.astype(np.float32), quads=quads.astype(np.float32), fps=float(fps), size=tuple(size),
        jitter_raw=metrics.jitter(ffhq_quad(filled)), jitter=metrics.jitter(quads),
        lag=metrics.lag(landmarks, filled, detected), smoothing=smoothing,
    )


def track_video(source: str | os.PathLike[str], detector: LandmarkDetector | None = None, *,
                backend: str = "dlib", start: int = 0, max_frames: int | None = None,
                smooth: SmoothingSettings | float = DEFAULT_SMOOTHING, progress: bool = True) -> FaceTrack:
    """Track one face through a video (or image folder / image), streaming its frames.

    ``detector`` is a ready backend; without one, ``make_detector(backend)`` builds it. ``start`` and
    ``max_frames`` choose the frames; ``smooth`` is :class:`SmoothingSettings` or one strength number
    (:meth:`SmoothingSettings.from_strength`). Raises NoFaceError when no frame holds a face,
    MediaError for unreadable input.
    """
    settings = as_settings(smooth)
    follower = FaceFollower(detector if detector is not None else make_detector(backend))
    points: list[np.ndarray] = []
    found: list[bool] = []
    missing = np.full((68, 2), np.nan, dtype=np.float32)
    with open_frames(source, start=start, max_frames=max_frames) as frames:
        with tqdm(total=frames.num_frames, disable=not progress, unit="frame", desc="tracking", leave=False) as bar:
            for frame in frames:
                face = follower.step(frame)
                points.append(missing if face is None else face.points.astype(np.float32))
                found.append(face is not None)
                bar.update(1)
        fps, size = frames.fps, frames.size
    if not points:
        raise MediaError(f"{source} has no frames to track; give a video that has frames")
    detected = np.array(found, dtype=bool)
    if not detected.any():
        raise NoFaceError(f"no face found in any of the {len(found)} frame(s) of {source}; "
                          "use a video with a clear, roughly frontal face")
    track = build_track(np.stack(points), detected, fps, size, settings)
    return replace(track, source_digest=content_digest(source), start=start)


def aligned_frames(source: str | os.PathLike[str], quads: np.ndarray, size: int, *, start: int = 0,
                   video_size: tuple[int, int] | None = None) -> Iterator[AlignedCrop]:
    """Stream the frames of ``source`` from ``start`` on, frame ``start + t`` aligned by ``quads[t]`` to ``size``².

    MediaError when the video's dimensions are not ``video_size`` (those of the video a track was made
    on, when given) or when it ends before the quads do.
    """
    with open_frames(source, start=start, max_frames=len(quads)) as frames:
        if video_size is not None and frames.size != tuple(video_size):
            raise MediaError(f"{source} is {frames.size[0]}x{frames.size[1]} but the track was made on a "
                             f"{video_size[0]}x{video_size[1]} video; track this video first")
        count = 0
        for frame, quad in zip(frames, quads):
            yield align_crop(frame, quad, size)
            count += 1
    if count < len(quads):
        raise MediaError(f"{source} has {count} frames from frame {start} but the track has {len(quads)}; "
                         "track this video first")


def write_preview(source: str | os.PathLike[str], track: FaceTrack, size: int, path: str | os.PathLike[str], *,
                  progress: bool = False) -> None:
    """An mp4 of the aligned crops with the smoothed landmarks drawn (green) over the raw ones (red, detected
    frames), with the video's audio; for viewing a track."""
    with open_frames(source) as frames:
        audio = frames.audio_source
    smoothed = track.aligned_landmarks(size)
    raw = to_aligned(np.nan_to_num(track.landmarks_raw), track.quads, size)
    start = track.start or 0
    with VideoWriter(path, track.fps, audio_from=audio, audio_start=start / track.fps) as writer:
        crops = aligned_frames(source, track.quads, size, start=start, video_size=track.size)
        for t, crop in enumerate(tqdm(crops, total=track.num_frames, disable=not progress, unit="frame",
                                      desc="preview", leave=False)):
            image = crop.image
            if track.detected[t]:
                image = draw_points(image, raw[t], colour=(255, 64, 64), radius=1.0)
            writer.write(draw_points(image, smoothed[t], lines=OUTLINES))
