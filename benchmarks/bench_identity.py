"""Cost of dlib's face-recognition ResNet in torch (stylepuppet.identity) against dlib's own, on this machine.

Times, for batch 1 and 4 of 150² face chips: dlib's ``compute_face_descriptor`` on aligned chips (its C++
forward pass), the torch port's forward (no_grad), and its forward + backward to the chips (what an
identity loss costs per step). Also the whole differentiable path of a loss step at 256²: a 256² image
with its 68 landmarks → dlib's framing (chip) → descriptor → backward to the image. Real chips from
``../shared/media/d0.mp4``; min / median seconds of ``--repeats`` after a warm-up; ratios are to dlib's
median at the same batch size.

    python benchmarks/bench_identity.py                # 1 torch thread (the project's setting)
    python benchmarks/bench_identity.py --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
import torch

from stylepuppet.identity import IdentityNet
from stylepuppet.identity.dlib_resnet import shipped_model_path
from stylepuppet.video import open_frames

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def real_faces(count: int) -> tuple[list[np.ndarray], list]:
    """``count`` frames of d0.mp4 (every 10th) and dlib's 68-point shape of their face."""
    models = shipped_model_path().parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    frames, shapes = [], []
    with open_frames(MEDIA / "d0.mp4", max_frames=10 * count) as source:
        for i, frame in enumerate(source):
            if i % 10 == 0:
                frame = np.ascontiguousarray(frame)
                frames.append(frame)
                shapes.append(predictor(frame, max(detector(frame, 1), key=lambda r: r.area())))
    return frames, shapes


def bench_chips(net: IdentityNet, encoder, chips: list[np.ndarray], warmup: int,
                repeats: int) -> dict[str, list[float]]:
    """dlib, torch forward and torch forward+backward to the chips, on one batch of chips."""
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255
    x_var = x.clone().requires_grad_(True)

    def forward() -> None:
        with torch.no_grad():
            net.net(x)

    def forward_backward() -> None:
        x_var.grad = None
        net.net(x_var).sum().backward()

    return {"dlib compute_face_descriptor": timed(lambda: encoder.compute_face_descriptor(chips), warmup, repeats),
            "torch forward": timed(forward, warmup, repeats),
            "torch forward+backward": timed(forward_backward, warmup, repeats)}


def bench_loss_step(net: IdentityNet, frame: np.ndarray, shape, warmup: int, repeats: int) -> list[float]:
    """Chip + descriptor forward and backward to a 256² image (the frame shrunk, its landmarks with it)."""
    image = torch.nn.functional.interpolate(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255,
                                            size=(256, 256), mode="area").requires_grad_(True)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    landmarks = torch.from_numpy((points + 0.5) * 256 / frame.shape[0] - 0.5)[None].float()

    def step() -> None:
        image.grad = None
        net.descriptor(image, landmarks).sum().backward()

    return timed(step, warmup, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    frames, shapes = real_faces(4)
    encoder = dlib.face_recognition_model_v1(str(shipped_model_path()))
    chips = [dlib.get_face_chip(f, s, size=150, padding=0.25) for f, s in zip(frames, shapes)]
    net = IdentityNet.load()
    rows = []
    for batch in (1, 4):
        cases = bench_chips(net, encoder, chips[:batch], args.warmup, args.repeats)
        if batch == 1:
            cases["torch chip+net forward+backward from 256²"] = bench_loss_step(net, frames[0], shapes[0],
                                                                                args.warmup, args.repeats)
        reference = statistics.median(cases["dlib compute_face_descriptor"])
        for name, t in cases.items():
            rows.append({"case": name, "batch": batch, "times": t, "ratio_to_dlib": statistics.median(t) / reference})

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\ndlib face-recognition ResNet, torch {torch.__version__} ({torch.get_num_threads()} threads), dlib "
          f"{dlib.__version__}, {os.cpu_count()} cores, load average {load:.1f} at the end; seconds min / median "
          f"of {args.repeats}\n")
    print("| case | batch | min / median s | per chip s | × dlib |")
    print("|---|---|---|---|---|")
    for r in rows:
        med = statistics.median(r["times"])
        print(f"| {r['case']} | {r['batch']} | {min(r['times']):.3f} / {med:.3f} | {med / r['batch']:.3f} | "
              f"{r['ratio_to_dlib']:.2f} |")
    if args.json:
        meta = {"torch": torch.__version__, "dlib": dlib.__version__, "threads": torch.get_num_threads(),
                "cores": os.cpu_count(), "load_average": load, "repeats": args.repeats, "machine": platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
