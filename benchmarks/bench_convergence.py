"""Convergence speed of the ``fast`` preset against the ``seed`` preset (the original method's schedule).

Self-consistency clip: the targets are rendered by the generator itself from a known smooth latent
path (a sweep of W along two random directions, broadcast to W+), so every frame is exactly
reachable. The set-up is the seed preset's objective at a small size: a randomly initialised tiny
StyleGAN2 (64², W+ with 10 layers of 32, its noise inputs optimised on frame 0), the FAN heat-map
landmark loss of the seed preset (a randomly initialised one-stack FAN at its 256² input, the
seed's group weights and λs, no framing jitter) on each target frame, and a look term to the first
target frame. The look term is the weights-free MS-SSIM + L1 (LPIPS with random weights measures
nothing, and would cost more than everything else at this size). Both presets run the same
objective; the schedule (steps, start prediction, learning rate, the later frames' optimiser: ``fast`` takes
L-BFGS steps there, each step one forward + backward pass as Adam's) and the latent filter differ.

For each preset: wall time and steps of the whole clip, its final mean landmark loss (each frame's
landmark term at the plain framing, averaged, on the latents as rendered: after the preset's latent
filter), and the output jitter: the mean absolute second difference in time of the rendered output
frames (pixels in [0, 1]; constant-velocity motion scores 0), printed beside the target clip's own.
``speedup`` = seed wall time / fast wall time, counted only if the fast preset reaches the seed's final
mean landmark loss (target ≥ 5, aim 10, at equal or lower landmark loss and jitter).

    python benchmarks/bench_convergence.py               # 48 frames
    python benchmarks/bench_convergence.py --quick       # 24 frames (a few minutes)
    python benchmarks/bench_convergence.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from stylepuppet.animation.networks import seeded
from stylepuppet.animation.render import smooth_latents
from stylepuppet.config import AnimateConfig, preset
from stylepuppet.generators.latent_stats import compute_latent_stats
from stylepuppet.generators.stylegan2 import untrained_stylegan2
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.images import to_unit
from stylepuppet.landmarks.fan import untrained_fan
from stylepuppet.optim.objective import FrameTargets, LandmarkObjective
from stylepuppet.optim.projector import Projector, predicted_start
from stylepuppet.perceptual.look import MSSSIMLook
from stylepuppet.perceptual.msssim import ms_ssim

TARGET = 5.0
#: Face box [x1, y1, x2, y2] in the 64² images: FAN's framing of it is a 66-pixel square around the centre.
BOX = torch.tensor([[16.0, 20.0, 48.0, 52.0]])


@dataclass
class Clip:
    """The generator, the objective's networks and the per-frame targets of the self-consistency clip."""

    gen: StyleGAN2Latents
    obj: LandmarkObjective
    look: MSSSIMLook
    look_target: Tensor
    targets: list[FrameTargets]
    truth: Tensor  # [T, 3, 64, 64] in [-1, 1]
    noise: dict[str, Tensor]  # the generator's noise before any run


def smooth_path(gen: StyleGAN2Latents, frames: int, seed: int = 3) -> Tensor:
    """Latents [T, num_ws, dim]: the mean plus a smooth sweep along two random directions (scaled by w_std)."""
    g = torch.Generator().manual_seed(seed)
    offset, a, b = torch.randn(3, gen.latent_dim, generator=g) * gen.latent_std() / gen.latent_dim**0.5
    t = torch.linspace(0, 1, frames)[:, None]
    path = gen.mean_latent() + 0.5 * offset + 0.5 * (torch.sin(3 * t) * a + (1 - torch.cos(3 * t)) * b)
    return path[:, None, :].expand(-1, gen.num_ws, -1).clone()


def build(frames: int, cfg: AnimateConfig) -> Clip:
    with seeded(0):
        G = untrained_stylegan2("tiny")
    gen = StyleGAN2Latents(G, "w+", compute_latent_stats(G, num_samples=2000))
    with seeded(1):
        net = untrained_fan("tiny").requires_grad_(False)
    obj = LandmarkObjective(net, cfg.landmarks)
    centre, side = obj.framing(BOX)
    with torch.no_grad():
        truth = gen.render(smooth_path(gen, frames))
    targets = [obj.targets_from_image(to_unit(truth[i:i + 1]), centre, side) for i in range(frames)]
    look = MSSSIMLook(ms_ssim)
    noise = {k: v.clone() for k, v in gen.noise_buffers().items()}
    return Clip(gen, obj, look, look.prepare(truth[:1]), targets, truth, noise)


def second_difference(frames: Tensor) -> float:
    """Mean |x_t − (x_{t−1} + x_{t+1}) / 2| over interior frames of images [T, 3, R, R] in [-1, 1], in [0, 1] units."""
    x = to_unit(frames)
    return float((x[1:-1] - 0.5 * (x[:-2] + x[2:])).abs().mean())


def run(clip: Clip, cfg: AnimateConfig) -> dict:
    """Animate the clip with ``cfg``'s λs and schedule, as the animate loop does; figures of the run."""
    with torch.no_grad():
        for name, buf in clip.gen.noise_buffers().items():
            buf.copy_(clip.noise[name])
    proj = Projector(clip.gen, clip.obj, cfg.loss, cfg.schedule, look=clip.look, look_target=clip.look_target,
                     seed=cfg.seed)
    ws: list[Tensor] = []
    steps = 0
    start = time.perf_counter()
    for i, tg in enumerate(clip.targets):
        init = predicted_start(ws, clip.gen) if cfg.schedule.predict else None
        result = proj.project(i, tg, ws[-1] if ws else None, init=init)
        ws.append(result.latent)
        steps += result.steps
    seconds = time.perf_counter() - start
    rendered = smooth_latents(torch.stack(ws), cfg.latent_smooth, clip.gen)
    landmark = [proj.evaluate(w, tg)["landmark"] for w, tg in zip(rendered, clip.targets)]
    with torch.no_grad():
        out = clip.gen.render(rendered)
    return {"seconds": seconds, "steps": steps, "final_landmark_loss": sum(landmark) / len(landmark),
            "output_jitter": second_difference(out), "per_frame_landmark_loss": landmark}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 frames instead of 48")
    parser.add_argument("--frames", type=int, help="clip length (default 48, quick 24; at least 24)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = max(24, args.frames or (24 if args.quick else 48))

    presets = {"seed": preset("seed"), "fast": preset("fast")}
    clip = build(frames, presets["seed"])
    runs = {}
    for name, cfg in presets.items():
        runs[name] = run(clip, cfg)
        r = runs[name]
        print(f"{name}: {r['seconds']:.1f} s, {r['steps']} steps, final landmark loss {r['final_landmark_loss']:.4g}, "
              f"output jitter {r['output_jitter']:.4g}", flush=True)
    seed, fast = runs["seed"], runs["fast"]
    reached = fast["final_landmark_loss"] <= seed["final_landmark_loss"]
    speedup = seed["seconds"] / fast["seconds"] if reached else float("nan")
    truth_jitter = second_difference(clip.truth)

    load = os.getloadavg()[0]
    print(f"\nSelf-consistency clip of {frames} frames (tiny StyleGAN2 64² W+, tiny FAN heat-map loss, MS-SSIM look); "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) on {os.cpu_count()} cores "
          f"({platform.machine()}), load average {load:.1f} at the end\n")
    print("| preset | wall time (s) | steps | final mean landmark loss | output jitter (target clip "
          f"{truth_jitter:.4g}) |")
    print("|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['steps']} | {r['final_landmark_loss']:.4g} | "
              f"{r['output_jitter']:.4g} |")
    verdict = "" if reached else " (the fast preset did not reach the seed's landmark loss)"
    print(f"\nspeedup (wall time to the seed's final landmark loss) {speedup:.2f}× (target ≥ {TARGET}){verdict}; "
          f"steps {seed['steps'] / fast['steps']:.2f}× fewer")
    if args.json:
        result = {"frames": frames, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "load_average": load, "target": TARGET, "speedup": speedup,
                  "step_ratio": seed["steps"] / fast["steps"],
                  "seed_final_landmark_loss": seed["final_landmark_loss"],
                  "fast_final_landmark_loss": fast["final_landmark_loss"],
                  "seed_output_jitter": seed["output_jitter"], "fast_output_jitter": fast["output_jitter"],
                  "target_clip_jitter": truth_jitter, "runs": runs}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
