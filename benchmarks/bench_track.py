"""Speed of the face-track stage on 512² video: decode + detect + landmarks + smooth + align, per step.

The stage runs as it does for `stylepuppet track` followed by cropping: pass 1 decodes and follows the
face (HOG search near the last box, landmark fit), then the track is filled and smoothed, then pass 2
decodes again and cuts the aligned crops with the smoothed quads. Each step is timed per frame; the
table shows ms/frame (wall clock) and its share of the whole, the stage's frames per second against
the target of 25, and (unless --quick) the same video with a whole-frame HOG search on every frame, to
show what following the face saves. The stage is single-threaded, so on a shared machine the fps from
this process's CPU time ("cpu fps") is the better estimate of what an idle machine gives; the load
average is printed for context.

    python benchmarks/bench_track.py                    # d0 and d3, dlib backend, 256² crops
    python benchmarks/bench_track.py --quick            # d0 only, no whole-frame comparison
    python benchmarks/bench_track.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from stylepuppet.face.align import align_crop
from stylepuppet.face.detect import Box, HogDetector, make_detector
from stylepuppet.face.smoothing import SmoothingSettings
from stylepuppet.face.track import FaceFollower, build_track
from stylepuppet.video import open_frames

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
TARGET_FPS = 25.0
STEPS = ("decode", "find faces", "landmarks", "fill + smooth", "decode again", "align")


class Clock:
    """Wall-clock and process CPU seconds per step."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[step] += time.perf_counter() - wall
        self.cpu[step] += time.process_time() - cpu


class TimedDetector:
    """Wraps a detector and times its two steps."""

    def __init__(self, inner: HogDetector, clock: Clock) -> None:
        self.inner, self.clock, self.name = inner, clock, inner.name

    def find_boxes(self, image: np.ndarray, region: np.ndarray | None = None) -> list[Box]:
        with self.clock("find faces"):
            return self.inner.find_boxes(image, region)

    def fit(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        with self.clock("landmarks"):
            return self.inner.fit(image, box)

    def detect(self, image: np.ndarray) -> list:
        return self.inner.detect(image)


def timed_frames(path: Path, clock: Clock, step: str, max_frames: int | None) -> Iterator[np.ndarray]:
    frames = iter(open_frames(path, max_frames=max_frames))
    while True:
        with clock(step):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


def run_stage(path: Path, detector: HogDetector, size: int, max_frames: int | None) -> dict:
    clock = Clock()
    follower = FaceFollower(TimedDetector(detector, clock))
    points, found = [], []
    with open_frames(path, max_frames=max_frames) as info:
        fps, frame_size = info.fps, info.size
    for frame in timed_frames(path, clock, "decode", max_frames):
        face = follower.step(frame)
        points.append(np.full((68, 2), np.nan, np.float32) if face is None else face.points)
        found.append(face is not None)
    with clock("fill + smooth"):
        track = build_track(np.stack(points), np.array(found), fps, frame_size, SmoothingSettings())
    for t, frame in enumerate(timed_frames(path, clock, "decode again", max_frames)):
        with clock("align"):
            align_crop(frame, track.quads[t].astype(np.float64), size)
    n = track.num_frames
    wall, cpu = sum(clock.wall.values()), sum(clock.cpu.values())
    return {"frames": n, "detected": track.num_detected, "seconds": wall, "fps": n / wall, "cpu_fps": n / cpu,
            "ms_per_frame": {s: 1000 * clock.wall[s] / n for s in STEPS},
            "cpu_ms_per_frame": {s: 1000 * clock.cpu[s] / n for s in STEPS},
            "jitter_raw": track.jitter_raw, "jitter": track.jitter, "lag": track.lag}


def run_whole_frame(path: Path, detector: HogDetector, max_frames: int | None) -> tuple[float, float]:
    """Wall and CPU frames per second of decode + whole-frame HOG + fit on every frame (no following)."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    for frame in open_frames(path, max_frames=max_frames):
        detector.detect(frame)
        count += 1
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="*", type=Path, help="videos (default: d0.mp4 and d3.mp4 of the samples)")
    parser.add_argument("--backend", default="dlib", choices=["dlib"], help="landmark backend")
    parser.add_argument("--size", type=int, default=256, help="aligned crop side")
    parser.add_argument("--quick", action="store_true", help="d0 only (first 60 frames), no whole-frame comparison")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    videos = args.videos or ([MEDIA / "d0.mp4"] if args.quick else [MEDIA / "d0.mp4", MEDIA / "d3.mp4"])
    max_frames = 60 if args.quick else None
    detector = make_detector(args.backend)
    for frame in open_frames(videos[0], max_frames=2):  # warm-up: libraries, caches
        detector.detect(frame)

    results = {}
    for path in videos:
        stage = run_stage(path, detector, args.size, max_frames)
        if not args.quick:
            stage["whole_frame_fps"], stage["whole_frame_cpu_fps"] = run_whole_frame(path, detector, max_frames)
        results[path.name] = stage

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"face track stage, backend {args.backend}, {args.size}² crops, {os.cpu_count()} cores "
          f"({platform.machine()}), load average {load}")
    names = list(results)
    width = 26

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:<24}" + "".join(c.rjust(width) for c in cells))

    row("ms/frame: wall (share) cpu", names)
    for step in STEPS:
        cells = []
        for n in names:
            wall, cpu = results[n]["ms_per_frame"][step], results[n]["cpu_ms_per_frame"][step]
            cells.append(f"{wall:6.2f} ({100 * wall * results[n]['fps'] / 1000:4.1f}%) {cpu:6.2f}")
        row(step, cells)
    row("total", [f"{1000 / results[n]['fps']:6.2f} (100.0%) {1000 / results[n]['cpu_fps']:6.2f}" for n in names])
    row("frames (faces found)", [f"{results[n]['frames']} ({results[n]['detected']})" for n in names])
    row("stage fps: wall / cpu", [f"{results[n]['fps']:.1f} / {results[n]['cpu_fps']:.1f}" for n in names])
    row("fps / target 25", [f"{results[n]['fps'] / TARGET_FPS:.2f} / {results[n]['cpu_fps'] / TARGET_FPS:.2f}"
                            for n in names])
    if not args.quick:
        # Pass 1 alone (decode + find + landmarks) against the same with a whole-frame search every frame.
        for n in names:
            ms = results[n]["cpu_ms_per_frame"]
            results[n]["pass1_cpu_fps"] = 1000 / (ms["decode"] + ms["find faces"] + ms["landmarks"])
        row("pass 1 cpu fps", [f"{results[n]['pass1_cpu_fps']:.1f}" for n in names])
        row("whole-frame HOG cpu fps", [f"{results[n]['whole_frame_cpu_fps']:.1f}" for n in names])
        row("following speed-up", [f"{results[n]['pass1_cpu_fps'] / results[n]['whole_frame_cpu_fps']:.2f}x"
                                   for n in names])
    row("jitter raw -> smoothed", [f"{results[n]['jitter_raw']:.4f} -> {results[n]['jitter']:.4f}" for n in names])
    row("jitter cut", [f"{results[n]['jitter_raw'] / results[n]['jitter']:.1f}x" for n in names])
    row("lag", [f"{results[n]['lag']:.4f}" for n in names])
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "size": args.size, "target_fps": TARGET_FPS,
                                         "load_average": os.getloadavg(), "videos": results}, indent=2))


if __name__ == "__main__":
    main()
