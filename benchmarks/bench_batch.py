"""Jobs per hour of a batch: 4 short animate jobs one after another vs through Ray with 2 workers.

The jobs are real and short: free mode with the offline DCGAN face generator and the MediaPipe mesh
(``../shared/models``), the first frames of four sample clips, a few start candidates. "One after
another" runs them in this process in a loop, as a script calling ``stylepuppet.animate`` would,
at one torch thread. "Ray" runs the same batch file with ``stylepuppet.batch`` at 2 jobs of one
torch thread each, starting its own local Ray (its start-up is part of the time and printed
apart). The ratio of the two rates is the figure; on a 2-core machine it can at best be 2. Each
mode writes into a fresh folder, so nothing is resumed or skipped. The load average before and
after is printed: on a shared machine other processes take cores from both modes.

    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py             # 4 jobs of 12 frames
    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py --quick     # 4 jobs of 4 frames
    OMP_NUM_THREADS=1 python benchmarks/bench_batch.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from stylepuppet.animation.run import animate
from stylepuppet.batches.jobs import plan_jobs
from stylepuppet.batches.runner import load_ray, run_batch

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = ("d0", "d3", "d11", "d12")


def batch_text(frames: int) -> str:
    driving = ", ".join(f'"{SHARED / "media" / clip}.mp4"' for clip in CLIPS)
    return f"""driving = [{driving}]
[settings]
preset = "free"
network = "{SHARED / 'models' / 'digiface_dcgan64_G.pt'}"
max_frames = {frames}
start_candidates = 16
start_rehearsal = 2
subframes = 1
[settings.landmarks]
net = "mesh"
weights = "{SHARED / 'models' / 'face_landmark.tflite'}"
"""


def one_after_another(path: Path, out: Path) -> float:
    """Wall seconds for the batch's jobs run in a loop in this process, one torch thread."""
    torch.set_num_threads(1)
    began = time.perf_counter()
    for job in plan_jobs(path):
        animate(job.config, job.driving, out / job.name, look=job.look, progress=False)
    return time.perf_counter() - began


def through_ray(path: Path, out: Path) -> tuple[float, float]:
    """Wall seconds for the batch through Ray (2 jobs of one thread, its local Ray started and stopped
    inside), and the seconds until Ray was up."""
    ray = load_ray()
    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - began
    try:
        result = run_batch(path, out, jobs=2, threads=1, progress=False)
    finally:
        ray.shutdown()
    if result.failed:
        raise SystemExit(f"a job failed: {result.failed[0].name}: {result.failed[0].error}")
    return time.perf_counter() - began, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 frames per job instead of 12")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    frames = 4 if args.quick else 12
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "jobs.toml"
        path.write_text(batch_text(frames))
        serial = one_after_another(path, folder / "serial")
        parallel, ray_start = through_ray(path, folder / "ray")
    load_after = os.getloadavg()
    jobs = len(CLIPS)
    rate_serial, rate_ray = jobs * 3600 / serial, jobs * 3600 / parallel
    print(f"batch of {jobs} free-mode jobs ({frames} frames each, DCGAN 64² + mesh), {os.cpu_count()} cores "
          f"({platform.machine()}); load average before {', '.join(f'{x:.1f}' for x in load_before)}, after "
          f"{', '.join(f'{x:.1f}' for x in load_after)}")
    print(f"{'mode':<34}{'wall s':>10}{'jobs/hour':>12}")
    print(f"{'one after another (1 thread)':<34}{serial:>10.1f}{rate_serial:>12.1f}")
    print(f"{'Ray, 2 workers x 1 thread':<34}{parallel:>10.1f}{rate_ray:>12.1f}   (Ray start-up {ray_start:.1f} s)")
    print(f"ratio Ray / one after another: {rate_ray / rate_serial:.2f}x (at best 2 on 2 cores)")
    if args.json:
        args.json.write_text(json.dumps({"jobs": jobs, "frames": frames, "serial_seconds": serial,
                                         "ray_seconds": parallel, "ray_start_seconds": ray_start,
                                         "jobs_per_hour_serial": rate_serial, "jobs_per_hour_ray": rate_ray,
                                         "ratio": rate_ray / rate_serial, "load_before": load_before,
                                         "load_after": load_after}, indent=2))


if __name__ == "__main__":
    main()
