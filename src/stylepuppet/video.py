"""Video and image input/output: streaming frame reading, image loading in any mode, H.264 and PNG writing.

Decoding and encoding use PyAV (FFmpeg's libraries in-process), so no command line is ever built. Frames are
numpy uint8 arrays [H, W, 3] in RGB order; sizes are (width, height).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from stylepuppet.atomic import plain_file_mode, temp_prefix
from stylepuppet.errors import MediaError

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_SUFFIXES",
    "FrameSource",
    "VideoInfo",
    "VideoWriter",
    "content_digest",
    "frame_rate",
    "image_to_rgb",
    "load_image",
    "natural_key",
    "open_frames",
    "probe",
    "write_frames_png",
    "write_png",
]

DEFAULT_FPS = 25.0
"""Frame rate given to image folders and single images unless the caller sets one."""

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
)
"""Still-image files, read with PIL. Everything else (including .gif, which may be animated) goes to FFmpeg."""

_WHITE = (255, 255, 255)


# ---------------------------------------------------------------------------------------------------- images


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a still image as uint8 RGB [H, W, 3], whatever its mode, with its EXIF orientation applied.

    Alpha (RGBA, LA, PA, palette transparency) is composited on white: transparent pixels often hold arbitrary
    colours, and white is what a viewer shows. 16-bit and 32-bit integer greyscale (I;16*, I) are scaled from
    the 16-bit range; float greyscale (F) is read as [0, 1] when its maximum is at most 1, otherwise as [0, 255].
    An animated file gives its first frame.
    """
    path = Path(path)
    _require_file(path, "image")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return image_to_rgb(img)
    except MediaError:
        raise
    except Exception as exc:  # PIL raises many types for damaged files; the user only needs the cause
        raise MediaError(f"cannot read image {path} ({_reason(exc)}); use an intact PNG or JPEG file") from None


def image_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to uint8 RGB [H, W, 3] (see load_image for the rules)."""
    mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = _scale_16bit(np.asarray(img))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = _scale_float(np.asarray(img, dtype=np.float32))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8).copy()
    try:
        rgb = img.convert("RGB")
    except ValueError as exc:
        raise MediaError(f"cannot convert image mode {mode} to RGB ({exc}); save it as an RGB PNG") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _has_alpha(img: Image.Image) -> bool:
    return "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """Map 16-bit range values to 8 bits (65535 -> 255), rounding; values outside [0, 65535] clip."""
    wide = np.clip(values.astype(np.float64), 0, 65535)
    return np.round(wide / 257.0).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """Map float intensities to 8 bits: [0, 1] when they fit in it, otherwise read as [0, 255]."""
    finite = values[np.isfinite(values)]
    scale = 255.0 if finite.size and float(finite.max()) <= 1.0 else 1.0
    return np.round(np.clip(np.nan_to_num(values * scale), 0, 255)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class VideoInfo:
    """What a frame source holds, read without decoding the pictures."""

    fps: float
    size: tuple[int, int]
    num_frames: int
    has_audio: bool


def content_digest(source: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, or of a folder's files (an image-folder clip) by name, in name order: what
    identifies a clip, a look image or a track file whatever its path."""
    path = Path(source)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    try:
        for f in files:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    except OSError as exc:
        raise MediaError(f"cannot read {path} ({_reason(exc)}); check the path") from None
    return h.hexdigest()


def probe(source: str | os.PathLike[str], *, fps: float | None = None) -> VideoInfo:
    """Frame rate, displayed size (rotation applied), frame count and audio presence of any source.

    The count comes from the container when it records one, otherwise from reading the packets (no decoding).
    `fps` sets the rate of image folders and single images (default 25); videos keep their own.
    """
    with open_frames(source, fps=fps) as frames:
        assert frames.num_frames is not None
        return VideoInfo(frames.fps, frames.size, frames.num_frames, frames.audio_source is not None)


# ---------------------------------------------------------------------------------------------------- frame sources


class FrameSource:
    """Iterable of uint8 RGB frames [H, W, 3] that decodes as it goes; each iteration starts from the beginning.

    Attributes: `path`, `fps` (average rate for variable-rate video), `size` (width, height), `num_frames`
    (frames this source yields after `start` / `max_frames`; None when unknown), `audio_source` (the file to copy
    audio from, or None).
    """

    path: Path
    fps: float
    size: tuple[int, int]
    num_frames: int | None
    audio_source: Path | None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError("the frame count of this source is unknown")
        return self.num_frames

    def close(self) -> None:
        """Release the decoder; the source can still be iterated again afterwards (it reopens)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, fps={self.fps:g}, size={self.size}, "
            f"num_frames={self.num_frames})"
        )


def open_frames(
    source: str | os.PathLike[str],
    *,
    start: int = 0,
    max_frames: int | None = None,
    fps: float | None = None,
) -> FrameSource:
    """Open a video file, a folder of images (natural order) or a single image as a stream of RGB frames.

    `start` skips that many frames; `max_frames` caps how many are yielded. `fps` sets the rate of image folders
    and single images (default 25); a video keeps its own rate and `fps` must then be None.
    """
    path = Path(source)
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if path.is_dir():
        return _FolderSource(path, start, max_frames, fps or DEFAULT_FPS)
    _require_file(path, "video or image")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ImageSource(path, start, max_frames, fps or DEFAULT_FPS)
    if fps is not None:
        raise ValueError("fps can only be set for image folders and single images; a video keeps its own rate")
    return _VideoSource(path, start, max_frames)


def _window(total: int, start: int, max_frames: int | None) -> int:
    """Frames left after skipping `start` of `total` and capping at `max_frames`."""
    left = max(total - start, 0)
    return left if max_frames is None else min(left, max_frames)


def _check_window(path: Path, total: int, start: int) -> None:
    if start >= total:
        raise MediaError(f"{path} has {total} frame(s); choose a start frame below {total}")


class _ImageSource(FrameSource):
    """One still image as a one-frame source."""

    def __init__(self, path: Path, start: int, max_frames: int | None, fps: float) -> None:
        self.path = path
        self.fps = float(fps)
        self.audio_source = None
        _check_window(path, 1, start)
        self._frame = load_image(path)
        self.size = (self._frame.shape[1], self._frame.shape[0])
        self.num_frames = _window(1, start, max_frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(self.num_frames or 0):
            yield self._frame.copy()


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting frame2 before frame10: digit runs compare as numbers, the rest case-insensitively."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)


class _FolderSource(FrameSource):
    """The still images of a folder in natural order, loaded one at a time."""

    def __init__(self, path: Path, start: int, max_frames: int | None, fps: float) -> None:
        self.path = path
        self.fps = float(fps)
        self.audio_source = None
        files = [
            p for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise MediaError(f"folder {path} holds no images; put frames in it as one of: {suffixes}")
        files.sort(key=lambda p: natural_key(p.name))
        _check_window(path, len(files), start)
        self.files = files[start:][: max_frames if max_frames is not None else None]
        self.num_frames = len(self.files)
        first = load_image(files[start])
        self.size = (first.shape[1], first.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        for file in self.files:
            frame = load_image(file)
            if (frame.shape[1], frame.shape[0]) != self.size:
                raise MediaError(
                    f"{file} is {frame.shape[1]}x{frame.shape[0]} but the folder's first frame is "
                    f"{self.size[0]}x{self.size[1]}; give every frame the same size"
                )
            yield frame


class _VideoSource(FrameSource):
    """A video file decoded with PyAV; the container stays closed between iterations."""

    def __init__(self, path: Path, start: int, max_frames: int | None) -> None:
        self.path = path
        self._start = start
        self._open: set[av.container.InputContainer] = set()
        container = _open_container(path)
        try:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream; give a video file, an image or a folder of images")
            stream = container.streams.video[0]
            total = stream.frames or _count_packets(path)
            if total == 0:
                raise MediaError(f"{path} has a video stream with no frames; give a video that has frames")
            self.fps = _stream_fps(stream, total)
            rotation = _first_rotation(path)
            if rotation is None:
                raise MediaError(f"{path} decoded to no frames; re-encode it (e.g. to H.264 mp4)")
            width, height = stream.codec_context.width, stream.codec_context.height
            if width <= 0 or height <= 0:
                raise MediaError(f"{path} has a video stream of unknown size; re-encode it (e.g. to H.264 mp4)")
            self._quarter_turns = _quarter_turns(rotation)
            self.size = (height, width) if self._quarter_turns % 2 else (width, height)
            self.audio_source = path if container.streams.audio else None
        finally:
            container.close()
        _check_window(path, total, start)
        self.num_frames = _window(total, start, max_frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        wanted = self.num_frames or 0
        if wanted == 0:
            return
        container = _open_container(self.path)
        self._open.add(container)
        index = yielded = 0
        try:
            for frame in _decode(container, container.streams.video[0], self.path):
                if index >= self._start:
                    yield _rotate(frame.to_ndarray(format="rgb24"), self._quarter_turns)
                    yielded += 1
                    if yielded >= wanted:
                        return
                index += 1
            if yielded == 0:
                raise MediaError(f"{self.path} decoded to no frames; re-encode it (e.g. to H.264 mp4)")
        finally:
            self._open.discard(container)
            container.close()

    def close(self) -> None:
        for container in list(self._open):
            container.close()
        self._open.clear()


def _open_container(path: Path) -> av.container.InputContainer:
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is empty (0 bytes); give a video file, an image or a folder of images")
    try:
        return av.open(str(path), mode="r")
    except av.EOFError:
        raise MediaError(f"{path} ends before any video data (no frames or cut short); give a complete video") from None
    except av.FFmpegError as exc:
        raise MediaError(
            f"cannot read {path} as a video ({_reason(exc)}); give a video file (mp4, mov, webm, avi, gif), "
            "an image or a folder of images"
        ) from None


def _decode(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> Iterator[av.VideoFrame]:
    """Decoded frames of `stream`, with FFmpeg failures turned into MediaError."""
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode {path} ({_reason(exc)}); re-encode it (e.g. to H.264 mp4)") from None
        yield frame


def _count_packets(path: Path) -> int:
    """Frame count by demuxing the first video stream (cheap: nothing is decoded)."""
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read {path} ({_reason(exc)}); re-encode it (e.g. to H.264 mp4)") from None
    finally:
        container.close()


def _stream_fps(stream: av.VideoStream, total: int) -> float:
    """Average frame rate: the stream's own average, else frames over duration, else its guessed base rate."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    if stream.duration and stream.time_base and total > 1:
        return total / float(stream.duration * stream.time_base)
    return DEFAULT_FPS


def _first_rotation(path: Path) -> float | None:
    """Display rotation in degrees (counter-clockwise) of the first decoded frame; None when nothing decodes."""
    container = _open_container(path)
    try:
        for frame in _decode(container, container.streams.video[0], path):
            return float(frame.rotation or 0)
        return None
    finally:
        container.close()


def _video_origin(container: av.container.InputContainer) -> float:
    """Time in seconds at which a file's first video stream starts (0 when it has none or does not say)."""
    if not container.streams.video:
        return 0.0
    stream = container.streams.video[0]
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns that display a frame upright, from its display-matrix angle."""
    return int(round(rotation / 90.0)) % 4


def _rotate(frame: np.ndarray, quarter_turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(frame, quarter_turns)) if quarter_turns else frame


# ---------------------------------------------------------------------------------------------------- helpers


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise MediaError(f"{path} does not exist; check the path of the {what}")
    if not path.is_file():
        raise MediaError(f"{path} is not a file; give a {what} file")


def _reason(exc: BaseException) -> str:
    """A short cause for an error message: FFmpeg's own text without errno and file name, else the first line."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return str(text).splitlines()[0]


def _temp_path(path: Path, suffix: str) -> Path:
    """A fresh hidden name beside `path` (creating its folder), so the final os.replace stays on one filesystem."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise MediaError(f"cannot write in {path.parent} ({_reason(exc)}); choose a writable folder") from None
    os.close(handle)
    os.chmod(name, plain_file_mode())  # mkstemp files are private (0600); the result should be a plain new file
    return Path(name)


def write_png(path: str | os.PathLike[str], frame: np.ndarray) -> Path:
    """Write a uint8 RGB (or greyscale) frame as PNG atomically (temp file beside it, then rename); makes folders."""
    path = Path(path)
    image = Image.fromarray(_check_frame(frame, allow_grey=True))
    temp = _temp_path(path, ".png")
    try:
        image.save(temp, format="PNG")
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise MediaError(f"cannot write {path} ({_reason(exc)}); check the folder is writable and has space") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def write_frames_png(
    directory: str | os.PathLike[str], frames: Iterable[np.ndarray], *, prefix: str = "frame_", first: int = 0
) -> list[Path]:
    """Write frames as numbered PNGs (frame_000000.png, ...) into `directory`, creating it; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [write_png(directory / f"{prefix}{i:06d}.png", f) for i, f in enumerate(frames, start=first)]


def _check_frame(frame: np.ndarray, *, allow_grey: bool = False) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if not (frame.ndim == 3 and frame.shape[2] == 3) and not (allow_grey and frame.ndim == 2):
        raise ValueError(f"frames must be [H, W, 3] RGB, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


def frame_rate(fps: float | Fraction) -> Fraction:
    """Exact rate for the encoder: NTSC-style rates (29.97, 59.94, 23.976) become N*1000/1001, others a fraction."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"fps must be a positive number, got {fps}")
        ntsc = round(value * 1.001)
        if abs(value - ntsc) > 1e-6 and abs(value - ntsc * 1000 / 1001) < 5e-3:
            rate = Fraction(ntsc * 1000, 1001)
        else:
            rate = Fraction(value).limit_denominator(1000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


_MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
"""Audio codecs copied into mp4 packet for packet; anything else is re-encoded to AAC."""


class _AudioCopy:
    """Moves the audio of a source file into the output, from `start` seconds on, up to the video's end.

    Times count from the start of the source's video stream, so audio that begins before or after the pictures
    (common in MPEG-TS and phone recordings) stays in sync.
    """

    def __init__(self, source: Path, start: float) -> None:
        self._container = _open_container(source)
        self._source = source
        self._input = self._container.streams.audio[0]
        self._start = start + _video_origin(self._container)
        self._remux = self._input.codec_context.name in _MP4_AUDIO_CODECS
        self._output: av.AudioStream | None = None
        self._packets = self._container.demux(self._input)
        self._pending: av.Packet | None = None
        self._samples_out = 0
        self._pending_samples: np.ndarray | None = None
        self._decoded = self._decoded_samples() if not self._remux else None

    def add_stream(self, container: av.container.OutputContainer) -> None:
        if self._remux:
            self._output = container.add_stream_from_template(self._input)
        else:
            stream = container.add_stream("aac", rate=self._input.rate)
            stream.layout = self._input.layout
            stream.bit_rate = 192_000
            self._output = stream

    def copy_until(self, container: av.container.OutputContainer, end: float) -> None:
        """Write source audio covering output time [0, end) seconds."""
        try:
            if self._remux:
                self._remux_until(container, end)
            else:
                self._encode_until(container, end)
        except av.FFmpegError as exc:
            raise MediaError(
                f"cannot copy the audio of {self._source} ({_reason(exc)}); write the video without audio"
            ) from None

    def finish(self, container: av.container.OutputContainer, end: float) -> None:
        self.copy_until(container, end)
        if not self._remux:
            assert self._output is not None
            for packet in self._output.encode(None):
                container.mux(packet)

    def close(self) -> None:
        self._container.close()

    def _remux_until(self, container: av.container.OutputContainer, end: float) -> None:
        time_base = self._input.time_base
        assert time_base is not None and self._output is not None
        offset = int(round(self._start / time_base))
        limit = offset + end / time_base
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.pts is None or packet.dts is None:
                continue
            if packet.pts >= limit:
                self._pending = packet
                return
            if packet.pts + (packet.duration or 0) < offset:
                continue
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = self._output
            container.mux(packet)

    def _decoded_samples(self) -> Iterator[np.ndarray]:
        """Source audio as float planar arrays [channels, n] at the source rate, from `start` on.

        Audio that begins after `start` is preceded by silence, so it keeps its place against the pictures.
        """
        rate = self._input.rate
        resampler = av.AudioResampler(format="fltp", layout=self._input.layout, rate=rate)
        skip: int | None = None
        for frame in self._container.decode(self._input):
            if skip is None:
                skip = int(round((self._start - (frame.time or 0.0)) * rate))
                if skip < 0:
                    yield np.zeros((self._input.layout.nb_channels, -skip), np.float32)
                    skip = 0
            for planar in resampler.resample(frame):
                samples = planar.to_ndarray()
                if skip:
                    dropped = min(skip, samples.shape[1])
                    samples, skip = samples[:, dropped:], skip - dropped
                if samples.shape[1]:
                    yield samples

    def _encode_until(self, container: av.container.OutputContainer, end: float) -> None:
        assert self._output is not None and self._decoded is not None
        rate = self._input.rate
        limit = int(round(end * rate))
        while self._samples_out < limit:
            samples = self._pending_samples if self._pending_samples is not None else next(self._decoded, None)
            self._pending_samples = None
            if samples is None:
                return
            room = limit - self._samples_out
            if samples.shape[1] > room:
                samples, self._pending_samples = samples[:, :room], samples[:, room:]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                               layout=self._input.layout.name)
            frame.sample_rate = rate
            frame.pts = self._samples_out
            frame.time_base = Fraction(1, rate)
            self._samples_out += samples.shape[1]
            for packet in self._output.encode(frame):
                container.mux(packet)


class VideoWriter:
    """H.264 (libx264, yuv420p) mp4 writer, used as a context manager; the file appears only when complete.

    Frames go to a hidden temp file beside `path`, renamed over `path` on a clean exit; on an exception the temp
    file is deleted and `path` is left as it was. Odd widths/heights are padded by one replicated edge row or
    column (yuv420p needs even sizes). `audio_from` copies the audio of a source file (remuxed when mp4 can hold
    its codec, else re-encoded to AAC) starting `audio_start` seconds into it, trimmed to the video's length;
    a source without audio gives a silent video.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction,
        audio_from: str | os.PathLike[str] | None = None,
        *,
        crf: int = 18,
        audio_start: float = 0.0,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise MediaError(f"{self.path} is a folder; give the name of the video file to write, e.g. "
                             f"{self.path / 'video.mp4'}")
        self.rate = frame_rate(fps)
        self.fps = float(self.rate)
        self.crf = int(crf)
        self.frames_written = 0
        self.size: tuple[int, int] | None = None
        if audio_start < 0:
            raise ValueError(f"audio_start must be >= 0, got {audio_start}")
        self._audio = self._open_audio(Path(audio_from), audio_start) if audio_from is not None else None
        try:
            self._temp = _temp_path(self.path, ".mp4")
        except MediaError:
            self._release_audio()
            raise
        try:
            self._container = av.open(
                str(self._temp), mode="w", format="mp4", options={"movflags": "+faststart"}
            )
        except av.FFmpegError as exc:
            self._release_audio()
            self._discard()
            raise MediaError(f"cannot write {self.path} ({_reason(exc)}); choose a writable path") from None
        self._stream: av.VideoStream | None = None
        self._closed = False

    @staticmethod
    def _open_audio(source: Path, start: float) -> _AudioCopy | None:
        _require_file(source, "audio source video")
        container = _open_container(source)
        has_audio = bool(container.streams.audio)
        container.close()
        return _AudioCopy(source, start) if has_audio else None

    def write(self, frame: np.ndarray) -> None:
        """Encode one uint8 RGB frame [H, W, 3]; every frame must have the size of the first."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        frame = _pad_even(_check_frame(frame))
        size = (frame.shape[1], frame.shape[0])
        if self._stream is None:
            self._start(size)
        elif size != self.size:
            raise ValueError(f"frame size {size} differs from the first frame's {self.size}")
        assert self._stream is not None
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
        picture.pts = self.frames_written
        try:
            for packet in self._stream.encode(picture):
                self._container.mux(packet)
            self.frames_written += 1
            if self._audio is not None:
                self._audio.copy_until(self._container, self.frames_written / self.rate)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot encode {self.path} ({_reason(exc)}); check the disk has space") from None

    def _start(self, size: tuple[int, int]) -> None:
        self.size = size
        stream = self._container.add_stream("libx264", rate=self.rate, options={"crf": str(self.crf)})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.rate
        self._stream = stream
        if self._audio is not None:
            self._audio.add_stream(self._container)

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise MediaError(f"no frames were written to {self.path}; nothing to save")
        assert self._stream is not None
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish(self._container, self.frames_written / self.rate)
            self._container.close()
        except av.FFmpegError as exc:
            self.abort()
            raise MediaError(f"cannot finish {self.path} ({_reason(exc)}); check the disk has space") from None
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._release_audio()
        os.replace(self._temp, self.path)

    def abort(self) -> None:
        """Stop without writing: the temp file is removed and `path` left untouched."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(av.FFmpegError):
            self._container.close()
        self._release_audio()
        self._discard()

    def _release_audio(self) -> None:
        if self._audio is not None:
            self._audio.close()

    def _discard(self) -> None:
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Replicate the last row/column when a side is odd, as yuv420p halves both sides for chroma."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
