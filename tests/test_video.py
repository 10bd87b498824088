"""Video and image I/O: real clips, every image mode, writing H.264 with audio, atomic files, bad inputs."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_factories import zero_frame_video
from PIL import Image

from stylepuppet.errors import MediaError
from stylepuppet.video import (
    VideoWriter,
    frame_rate,
    image_to_rgb,
    load_image,
    natural_key,
    open_frames,
    probe,
    write_frames_png,
    write_png,
)

AUDIO_RATE = 44100
AAC_FRAME = 1024  # samples per AAC packet: the granularity at which copied audio can be cut


# ------------------------------------------------------------------------------------------ helpers


def gradient_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth, moving content that H.264 at crf 18 reproduces closely, distinct per frame."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(count):
        red = 40 + 150 * xs / max(width - 1, 1)
        green = 40 + 150 * ys / max(height - 1, 1)
        blue = np.full_like(xs, 30 + 15 * t)
        frames.append(np.stack([red, green, blue], axis=2).astype(np.uint8))
    return frames


def encode_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int | Fraction,
    codec: str = "libx264",
    *,
    audio: np.ndarray | None = None,
    audio_codec: str = "aac",
    audio_delay: float = 0.0,
    rotation: int = 0,
) -> Path:
    """Write frames (and optionally mono float audio in [-1, 1], starting `audio_delay` seconds after the
    pictures) with PyAV directly, independent of VideoWriter."""
    container = av.open(str(path), mode="w")
    video = container.add_stream(codec, rate=fps)
    video.width, video.height = frames[0].shape[1], frames[0].shape[0]
    video.pix_fmt = "yuv420p"
    video.bit_rate = 4_000_000  # plenty for tiny frames, so decoded pixels stay close to the originals
    if rotation:
        video.set_display_rotation(rotation)
    sound = None
    if audio is not None:
        sound = container.add_stream(audio_codec, rate=AUDIO_RATE)
        sound.layout = "mono"
    for i, frame in enumerate(frames):
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
        picture.pts = i
        for packet in video.encode(picture):
            container.mux(packet)
    for packet in video.encode(None):
        container.mux(packet)
    if sound is not None and audio is not None:
        sample_format = "s16" if audio_codec.startswith("pcm_s16") else "fltp"
        for begin in range(0, len(audio), AAC_FRAME):
            chunk = audio[begin : begin + AAC_FRAME]
            data = (chunk * 32767).astype(np.int16) if sample_format == "s16" else chunk.astype(np.float32)
            piece = av.AudioFrame.from_ndarray(data[None, :], format=sample_format, layout="mono")
            piece.sample_rate = AUDIO_RATE
            piece.pts = begin + int(round(audio_delay * AUDIO_RATE))
            for packet in sound.encode(piece):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    container.close()
    return path


def sine(seconds: float, silent_until: float = 0.0) -> np.ndarray:
    """A 440 Hz tone at half scale, silent for its first `silent_until` seconds."""
    t = np.arange(int(round(seconds * AUDIO_RATE))) / AUDIO_RATE
    return np.where(t >= silent_until, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)


def decoded_audio(path: Path) -> tuple[str, np.ndarray]:
    """Codec name and all decoded samples (first channel) of a file's AAC (float planar) audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray()[0] for frame in container.decode(stream)]
        return stream.codec_context.name, np.concatenate(chunks).astype(np.float64)


def video_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.frames / stream.average_rate)


# ------------------------------------------------------------------------------------------ real clips


@pytest.mark.parametrize(
    ("name", "fps", "count", "audio"), [("d0.mp4", 25.0, 78, False), ("d3.mp4", 30.0, 354, True)]
)
def test_real_clips(media_dir: Path, name: str, fps: float, count: int, audio: bool) -> None:
    path = media_dir / name
    info = probe(path)
    assert (info.fps, info.size, info.num_frames, info.has_audio) == (fps, (512, 512), count, audio)
    with open_frames(path) as source:
        assert (source.fps, source.size, source.num_frames, len(source)) == (fps, (512, 512), count, count)
        assert source.audio_source == (path if audio else None)
        seen = 0
        for frame in source:
            assert frame.dtype == np.uint8 and frame.shape == (512, 512, 3)
            seen += 1
        assert seen == count


def test_stream_restarts_and_windows(media_dir: Path) -> None:
    source = open_frames(media_dir / "d0.mp4")
    first_pass = iter(source)
    head = [next(first_pass) for _ in range(15)]
    again = next(iter(source))  # a new iteration starts over, even while another was mid-way
    np.testing.assert_array_equal(again, head[0])
    np.testing.assert_array_equal(next(first_pass), next(iter(open_frames(media_dir / "d0.mp4", start=15))))
    assert not np.array_equal(head[0], head[14])

    window = open_frames(media_dir / "d0.mp4", start=10, max_frames=5)
    assert window.num_frames == 5
    got = list(window)
    assert len(got) == 5
    for expected, frame in zip(head[10:15], got, strict=True):
        np.testing.assert_array_equal(frame, expected)
    assert list(window)[0].tobytes() == got[0].tobytes()

    tail = open_frames(media_dir / "d0.mp4", start=75, max_frames=100)
    assert tail.num_frames == 3 and len(list(tail)) == 3
    assert open_frames(media_dir / "d0.mp4", max_frames=0).num_frames == 0
    with pytest.raises(MediaError, match="has 78 frame"):
        open_frames(media_dir / "d0.mp4", start=78)


# ------------------------------------------------------------------------------------------ other containers


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "libvpx-vp9"), (".avi", "mpeg4"), (".mov", "libx264")])
def test_reads_other_containers(tmp_path: Path, suffix: str, codec: str) -> None:
    frames = gradient_frames(12, 64, 48)
    path = encode_video(tmp_path / f"clip{suffix}", frames, 25, codec)
    source = open_frames(path)
    assert (source.fps, source.size, source.num_frames) == (25.0, (64, 48), 12)
    got = list(source)
    assert len(got) == 12
    for expected, frame in zip(frames, got, strict=True):
        assert np.abs(frame.astype(int) - expected).mean() < 6


def test_reads_gif_with_average_rate(tmp_path: Path) -> None:
    frames = gradient_frames(10, 40, 30)
    path = tmp_path / "anim.gif"
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=[40, 80] * 5, loop=0)
    source = open_frames(path)
    assert source.num_frames == 10 and source.size == (40, 30)
    assert source.fps == pytest.approx(10 / 0.6)  # variable delays: frames over total duration
    got = list(source)
    assert len(got) == 10 and got[3].shape == (30, 40, 3)
    assert np.abs(got[3].astype(int) - frames[3]).mean() < 12  # GIF's 256-colour palette


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:8, :8] = 255  # a white block in the top-left corner
    path = encode_video(tmp_path / "rotated.mp4", [frame] * 3, 25, rotation=90)
    source = open_frames(path)
    assert source.size == (32, 48)
    shown = next(iter(source))
    assert shown.shape == (48, 32, 3)
    # a 90-degree counter-clockwise display rotation moves the top-left corner to the bottom-left
    assert shown[44, 3].min() > 200 and shown[3, 3].max() < 50


# ------------------------------------------------------------------------------------------ folders and images


def test_folder_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in (10, 2, 1, 33):
        Image.fromarray(np.full((6, 8, 3), number, np.uint8)).save(folder / f"frame{number}.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"junk")
    source = open_frames(folder)
    assert (source.fps, source.size, source.num_frames, source.audio_source) == (25.0, (8, 6), 4, None)
    assert [int(f[0, 0, 0]) for f in source] == [1, 2, 10, 33]
    window = open_frames(folder, start=1, max_frames=2, fps=12.5)
    assert window.fps == 12.5 and [int(f[0, 0, 0]) for f in window] == [2, 10]
    assert sorted(["f10", "f2", "F1", "f1a"], key=natural_key) == ["F1", "f1a", "f2", "f10"]


def test_folder_problems(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="holds no images"):
        open_frames(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (8, 6)).save(mixed / "a1.png")
    Image.new("RGB", (8, 8)).save(mixed / "a2.png")
    with pytest.raises(MediaError, match="same size"):
        list(open_frames(mixed))


def test_single_image_source(media_dir: Path) -> None:
    source = open_frames(media_dir / "s0.jpg")
    frames = list(source)
    assert source.num_frames == 1 and len(frames) == 1 and source.fps == 25.0
    assert frames[0].shape == (source.size[1], source.size[0], 3) and frames[0].dtype == np.uint8
    np.testing.assert_array_equal(frames[0], load_image(media_dir / "s0.jpg"))
    assert len(list(source)) == 1


@pytest.mark.parametrize(
    ("mode", "fill", "expected"),
    [
        ("RGB", (10, 120, 250), (10, 120, 250)),
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("RGBA", (255, 0, 0, 128), (255, 127, 127)),  # half-transparent red over white
        ("LA", (0, 0), (255, 255, 255)),  # fully transparent -> white
        ("I", 65535, (255, 255, 255)),
        ("I", 257 * 100, (100, 100, 100)),
        ("F", 0.5, (128, 128, 128)),
        ("F", 200.0, (200, 200, 200)),
    ],
)
def test_image_modes(tmp_path: Path, mode: str, fill: object, expected: tuple[int, int, int]) -> None:
    path = tmp_path / "image.tif" if mode in ("I", "F") else tmp_path / "image.png"
    Image.new(mode, (5, 4), fill).save(path)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (4, 5, 3)
    np.testing.assert_allclose(image[2, 2], expected, atol=1)


def test_in_memory_modes() -> None:
    # modes PIL cannot round-trip through a file here still convert; YCbCr (76, 85, 255) is pure red
    np.testing.assert_allclose(image_to_rgb(Image.new("YCbCr", (3, 2), (76, 85, 255)))[1, 1], (254, 0, 0), atol=2)
    np.testing.assert_array_equal(image_to_rgb(Image.new("PA", (3, 2), (0, 0)))[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(image_to_rgb(Image.new("I;16B", (3, 2), 65535))[0, 0], (255, 255, 255))


def test_palette_images(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 30, 10] + [0] * 762)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png")[0, 0], (200, 30, 10))
    palette.save(tmp_path / "pt.png", transparency=1)
    np.testing.assert_array_equal(load_image(tmp_path / "pt.png")[0, 0], (255, 255, 255))


def png_rgb16(pixels: np.ndarray) -> bytes:
    """A 48-bit RGB PNG file, built by hand because PIL cannot write one."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_sixteen_bit_png_scales(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = load_image(tmp_path / "deep.png")
    assert image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 128, 255])

    colour = np.array([[[65535, 0, 32896], [257 * 7, 257 * 200, 65280]]], dtype=np.uint16)
    (tmp_path / "deep_rgb.png").write_bytes(png_rgb16(colour))
    np.testing.assert_allclose(load_image(tmp_path / "deep_rgb.png")[0], [[255, 0, 128], [7, 200, 254]], atol=1)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    image = load_image(tmp_path / "cmyk.jpg")
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image[8, 8], (255, 0, 0), atol=8)


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: display rotated 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    image = load_image(tmp_path / "phone.jpg")
    assert image.shape == (40, 20, 3)  # portrait after rotation
    np.testing.assert_allclose(image[5, 10], (255, 0, 0), atol=12)  # the left side is now on top
    np.testing.assert_allclose(image[35, 10], (0, 0, 255), atol=12)


# ------------------------------------------------------------------------------------------ writing


def test_frame_rate() -> None:
    assert frame_rate(29.97) == Fraction(30000, 1001)
    assert frame_rate(23.976) == Fraction(24000, 1001)
    assert frame_rate(30000 / 1001) == Fraction(30000, 1001)
    assert frame_rate(25) == 25 and frame_rate(12.5) == Fraction(25, 2)
    assert frame_rate(Fraction(7, 3)) == Fraction(7, 3)
    with pytest.raises(ValueError):
        frame_rate(0)


def test_write_odd_size_fractional_fps(tmp_path: Path) -> None:
    frames = gradient_frames(9, 33, 21)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 29.97) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.size == (34, 22)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == Fraction(30000, 1001)
        assert not container.streams.audio
    source = open_frames(path)
    assert (source.size, source.num_frames) == ((34, 22), 9)
    assert source.fps == pytest.approx(29.97, abs=1e-3)
    back = list(source)
    assert len(back) == 9
    for expected, frame in zip(frames, back, strict=True):
        assert np.abs(frame[:21, :33].astype(int) - expected).mean() < 3
        np.testing.assert_allclose(frame[:21, 33].astype(int), frame[:21, 32], atol=12)  # replicated edge


def test_writer_copies_and_trims_aac_audio(tmp_path: Path) -> None:
    source = encode_video(tmp_path / "talk.mp4", gradient_frames(40, 32, 32), 25, audio=sine(2.0))
    assert probe(source).has_audio
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 25, audio_from=open_frames(source).audio_source) as writer:
        for frame in gradient_frames(20, 32, 32):
            writer.write(frame)
    codec, samples = decoded_audio(path)
    assert codec == "aac" and probe(path).has_audio
    assert video_seconds(path) == pytest.approx(0.8)
    assert abs(len(samples) - 0.8 * AUDIO_RATE) <= AAC_FRAME  # trimmed to the video, within one packet
    assert np.sqrt(np.mean(samples[2000:30000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_writer_reencodes_audio_and_starts_at_offset(tmp_path: Path) -> None:
    # PCM cannot go into mp4: it is re-encoded to AAC. The source is silent for 1 s, then a tone.
    source = encode_video(
        tmp_path / "talk.mov", gradient_frames(50, 32, 32), 25, audio=sine(2.0, silent_until=1.0),
        audio_codec="pcm_s16le",
    )
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 25, audio_from=source, audio_start=1.0) as writer:
        for frame in gradient_frames(10, 32, 32):
            writer.write(frame)
    codec, samples = decoded_audio(path)
    assert codec == "aac"
    assert abs(len(samples) - 0.4 * AUDIO_RATE) <= AAC_FRAME
    assert np.sqrt(np.mean(samples[1000:8000] ** 2)) > 0.3  # the tone, not the silence before it


@pytest.mark.parametrize(("codec", "suffix"), [("aac", ".mp4"), ("pcm_s16le", ".mov")])
def test_writer_keeps_late_audio_in_place(tmp_path: Path, codec: str, suffix: str) -> None:
    # the source's sound starts 0.5 s after its pictures; the copy must keep that gap
    source = encode_video(
        tmp_path / f"late{suffix}", gradient_frames(50, 32, 32), 25, audio=sine(2.0), audio_codec=codec,
        audio_delay=0.5,
    )
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 25, audio_from=source) as writer:
        for frame in gradient_frames(25, 32, 32):
            writer.write(frame)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        start = float(stream.start_time * stream.time_base)
    _, samples = decoded_audio(path)
    if codec == "aac":
        assert start == pytest.approx(0.5, abs=2 * AAC_FRAME / AUDIO_RATE)  # copied packets keep their times
    else:
        assert start <= 0.0 and np.abs(samples[: int(0.45 * AUDIO_RATE)]).max() < 0.01  # gap filled with silence
    start = max(start, 0.0)
    sound_from = start + np.flatnonzero(np.abs(samples) > 0.1)[0] / AUDIO_RATE
    assert sound_from == pytest.approx(0.5, abs=0.01)
    assert start + len(samples) / AUDIO_RATE == pytest.approx(1.0, abs=AAC_FRAME / AUDIO_RATE)


def test_writer_copies_real_audio(media_dir: Path, tmp_path: Path) -> None:
    source = open_frames(media_dir / "d3.mp4", max_frames=30)
    path = tmp_path / "d3_head.mp4"
    with VideoWriter(path, source.fps, audio_from=source.audio_source) as writer:
        for frame in source:
            writer.write(frame)
    codec, samples = decoded_audio(path)
    assert codec == "aac" and probe(path).num_frames == 30
    assert abs(len(samples) / AUDIO_RATE - 1.0) <= AAC_FRAME / AUDIO_RATE


def test_writer_source_without_audio_gives_silent_video(media_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with VideoWriter(path, 25, audio_from=media_dir / "d0.mp4") as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    assert not probe(path).has_audio


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(path, 25) as writer:
        for frame in gradient_frames(3, 16, 16):
            writer.write(frame)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    path.write_bytes(b"previous result")
    with pytest.raises(ValueError, match="differs"), VideoWriter(path, 25) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        writer.write(np.zeros((18, 16, 3), np.uint8))
    assert path.read_bytes() == b"previous result"
    assert list(tmp_path.iterdir()) == [path]

    with pytest.raises(MediaError, match="no frames were written"), VideoWriter(tmp_path / "none.mp4", 25):
        pass
    with pytest.raises(ValueError, match="uint8"), VideoWriter(tmp_path / "float.mp4", 25) as writer:
        writer.write(np.zeros((16, 16, 3), np.float32))
    assert list(tmp_path.iterdir()) == [path]


def test_png_writing(tmp_path: Path) -> None:
    frame = gradient_frames(1, 7, 5)[0]
    write_png(tmp_path / "one.png", frame)
    np.testing.assert_array_equal(load_image(tmp_path / "one.png"), frame)
    paths = write_frames_png(tmp_path / "seq", gradient_frames(3, 7, 5))
    assert [p.name for p in paths] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == [p.name for p in paths]
    assert [int(f[0, 0, 2]) for f in open_frames(tmp_path / "seq")] == [30, 45, 60]
    with pytest.raises(ValueError):
        write_png(tmp_path / "bad.png", np.zeros((5, 7, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "seq"]


# ------------------------------------------------------------------------------------------ bad inputs


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def audio_only(path: Path) -> Path:
    container = av.open(str(path), mode="w")
    stream = container.add_stream("aac", rate=AUDIO_RATE)
    stream.layout = "mono"
    piece = av.AudioFrame.from_ndarray(np.zeros((1, AAC_FRAME), np.float32), format="fltp", layout="mono")
    piece.sample_rate, piece.pts = AUDIO_RATE, 0
    for packet in [*stream.encode(piece), *stream.encode(None)]:
        container.mux(packet)
    container.close()
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: d / "missing_folder" / "x.png", "does not exist"),
        (lambda d: written(d / "notes.txt", b"hello"), "cannot read .* as a video"),
        (lambda d: written(d / "fake.mp4", b"hello"), "cannot read .* as a video"),
        (lambda d: written(d / "empty.mp4", b""), "is empty"),
        (lambda d: zero_frame_video(d / "zero.avi"), "no frames"),
        (lambda d: audio_only(d / "sound.m4a"), "no video stream"),
        (lambda d: written(d / "fake.png", b"hello"), "cannot read image"),
    ],
)
def test_bad_inputs(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(MediaError, match=message) as caught:
        probe(path)
    assert "\n" not in str(caught.value) and caught.value.__cause__ is None


def test_unreadable_images(tmp_path: Path, media_dir: Path) -> None:
    (tmp_path / "cut.jpg").write_bytes((media_dir / "s0.jpg").read_bytes()[:2000])
    with pytest.raises(MediaError, match=r"cannot read image .*cut\.jpg .*use an intact PNG or JPEG"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(MediaError, match="not a file"):
        load_image(tmp_path)


def test_written_files_get_the_permissions_of_a_plain_new_file(tmp_path):
    mask = os.umask(0o022)
    try:
        png = write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
        with VideoWriter(tmp_path / "a.mp4", 25) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
    finally:
        os.umask(mask)
    assert png.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.mp4").stat().st_mode & 0o777 == 0o644
