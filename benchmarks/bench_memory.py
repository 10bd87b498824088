"""Peak memory of an animate run against clip length: nothing in the pipeline may grow with the clip.

Two synthetic driving clips are made from the bundled ``d0.mp4`` (512², 78 frames) played forwards
and backwards until they are 50 and 1000 frames long (``--quick``: 50 and 250). Each is animated
end to end — face track, targets, projection of every frame with the state saved after each one,
the animation and side-by-side videos, latents.npz — in a fresh Python process, with the small
offline networks: the 64² DCGAN face generator and the MediaPipe mesh in free mode (the README's
quick start) at 2 steps for frame 0 and 1 for later frames (the step count does not change what is
kept in memory). Each process reports its own peak resident set size (``ru_maxrss``).

    python benchmarks/bench_memory.py                # 50 and 1000 frames
    python benchmarks/bench_memory.py --quick        # 50 and 250 frames
    python benchmarks/bench_memory.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylepuppet.video import VideoWriter, open_frames

SHARED = Path(__file__).resolve().parents[2] / "shared"
TARGET = 1.2

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
from stylepuppet.animation.run import animate
from stylepuppet.config import resolve_config
shared = sys.argv[4]
cfg = resolve_config("free", None, {
    "network": shared + "/models/digiface_dcgan64_G.pt", "space": "w", "landmarks.net": "mesh",
    "landmarks.weights": shared + "/models/face_landmark.tflite", "subframes": 1,
    "schedule.steps_first": 2, "schedule.steps": 1})
start = time.perf_counter()
result = animate(cfg, sys.argv[1], sys.argv[2], progress=False)
print(json.dumps({"frames": result.frames, "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_clip(path: Path, frames: int) -> None:
    """``frames`` frames of d0.mp4 played forwards and backwards (a face in every frame, no jumps)."""
    with open_frames(SHARED / "media" / "d0.mp4") as source:
        fps = source.fps
        clip = list(source)
    cycle = clip + clip[-2:0:-1]
    with VideoWriter(path, fps) as writer:
        for t in range(frames):
            writer.write(cycle[t % len(cycle)])


def measure(clip: Path, out: Path, threads: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(clip), str(out), str(threads), str(SHARED)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 and 250 frames instead of 50 and 1000")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    lengths = (50, 250) if args.quick else (50, 1000)

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in lengths:
            clip = Path(tmp) / f"clip{n}.mp4"
            began = time.perf_counter()
            make_clip(clip, n)
            runs[n] = measure(clip, Path(tmp) / f"run{n}", args.threads)
            print(f"{n} frames: peak RSS {runs[n]['peak_rss_mb']:.0f} MB, animate {runs[n]['seconds']:.0f} s "
                  f"({time.perf_counter() - began:.0f} s with making the clip)", flush=True)
    short, long = lengths
    ratio = runs[long]["peak_rss_mb"] / runs[short]["peak_rss_mb"]
    load = os.getloadavg()[0]
    print(f"\nPeak RSS of `animate` (free mode, DCGAN 64² + mesh, 512² driving clip), each in a fresh process; "
          f"{os.cpu_count()} cores ({platform.machine()}), load average {load:.1f} at the end\n")
    print("| frames | peak RSS (MB) | animate wall time (s) |")
    print("|---|---|---|")
    for n in lengths:
        print(f"| {n} | {runs[n]['peak_rss_mb']:.0f} | {runs[n]['seconds']:.0f} |")
    print(f"\nrss_ratio_{long}_vs_{short} {ratio:.3f} (target ≤ {TARGET} for 1000 vs 50)")
    if args.json:
        result = {"load_average": load, "threads": args.threads, "target": TARGET,
                  "runs": {str(n): r for n, r in runs.items()}, f"rss_ratio_{long}_vs_{short}": ratio}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
