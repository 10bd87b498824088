"""Cost of one optimisation step of the engine against the bare cost of the networks it runs.

At 256² with random weights (same cost as trained ones): our StyleGAN2 generator with the paper256
widths, 2DFAN4 (FAN, 4 stacks), LPIPS-VGG16 and the MediaPipe face mesh read from
``face_landmark.tflite``. Two engine set-ups, each a later frame's step (frame 0 also optimises
the noise buffers and runs only once per clip):

* ``keep-identity+FAN``: the ``keep-identity`` preset (W+, relative coordinate loss, its jittered
  framings, LPIPS look term, identity term) — the step runs G, FAN on one crop per framing, LPIPS on
  1 image and dlib's face ResNet (the real one ``face-recognition-models`` installs) on one 150² chip;
* ``free+mesh``: the ``free`` preset with the mesh landmark net (W, its jittered framings) — G and
  the mesh on one crop per framing.

The mesh's cost against FAN's is compared per crop (``mesh_vs_fan``), as the presets may frame the
face a different number of times.

The bare cost of a network is one forward and one backward pass of the input gradient (weights
frozen) at exactly the batch and size the step uses, with nothing around it. Each round times
every bare network once and one engine step of each set-up (the second step of a 2-step
projection, read from the progress callback), so slow phases of a shared machine hit all of them
alike; the table shows medians over the rounds and ``overhead_ratio`` = step / sum of bare costs.

On a GPU (``--device cuda``) every timing waits for the device, and the table gains one row per CUDA
option of the schedule (``cuda_autocast = "bf16"``, ``cuda_channels_last``, ``cuda_compile``, and all three)
for each set-up, against the same bare networks in fp32: the figures a first GPU user can report.

The step's page faults (``faults_per_step``) are counted too: on the CPU, glibc returning the memory a
step frees to the kernel made every step fault it in again (docs/performance.md); the engine now keeps it.

    python benchmarks/bench_step.py                  # 5 rounds
    python benchmarks/bench_step.py --quick          # 2 rounds (about 1 minute)
    python benchmarks/bench_step.py --device cuda    # on a GPU, with the CUDA options
    python benchmarks/bench_step.py --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from stylepuppet import weights
from stylepuppet.config import AnimateConfig, preset
from stylepuppet.devices import torch_device
from stylepuppet.generators.latent_stats import compute_latent_stats
from stylepuppet.generators.stylegan2 import Generator
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.identity import IdentityNet
from stylepuppet.identity.chip import CHIP_SIZE
from stylepuppet.images import to_unit
from stylepuppet.landmarks.fan import FAN
from stylepuppet.landmarks.mesh import load_mesh
from stylepuppet.optim.objective import FrameTargets, IdentityObjective, LandmarkObjective
from stylepuppet.optim.projector import Projector
from stylepuppet.perceptual.look import LPIPSLook
from stylepuppet.perceptual.lpips import untrained_lpips

MESH = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmark.tflite"
TARGET = 1.10
#: The face box [x1, y1, x2, y2] of the 256² images (where FFHQ alignment puts a face's landmarks).
BOX = torch.tensor([[62.0, 86.0, 194.0, 222.0]])


def face68(box: Tensor) -> Tensor:
    """A plausible iBUG-68 face [1, 68, 2] filling ``box`` (an ellipse-ish outline: only where the identity
    chip is cut matters here, not the face)."""
    x1, y1, x2, y2 = box[0].tolist()
    t = torch.linspace(0, 1, 68)
    u = torch.stack([0.5 + 0.45 * torch.cos(2 * torch.pi * t), 0.55 + 0.4 * torch.sin(2 * torch.pi * t)], dim=1)
    # eyes (36–47) and mouth (48–67) where a face has them, so the chip's similarity fit is a face's
    u[36:42] = torch.tensor([0.3, 0.4]) + 0.05 * u[36:42] - 0.025
    u[42:48] = torch.tensor([0.7, 0.4]) + 0.05 * u[42:48] - 0.025
    u[48:68] = torch.tensor([0.5, 0.78]) + 0.15 * (u[48:68] - 0.5)
    return (torch.tensor([x1, y1]) + u * torch.tensor([x2 - x1, y2 - y1]))[None]


def generator() -> Generator:
    """Paper256 widths (channel_base 16384, conv_clamp 256 as in NVIDIA's pickles), random weights."""
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": 16384, "channel_max": 512, "conv_clamp": 256})
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G.eval().requires_grad_(False)


def bare(fn: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], None]:
    """One forward of ``fn`` on a leaf copy of ``x`` and one backward of a fixed random cotangent."""
    leaf = x.detach().clone().requires_grad_(True)
    with torch.no_grad():
        cot = torch.randn_like(fn(leaf))

    def run() -> None:
        leaf.grad = None
        fn(leaf).backward(cot)

    return run


def synchronize() -> None:
    """Wait for the GPU's queued work (timings of asynchronous kernels); nothing on the CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def seconds(fn: Callable[[], None]) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def page_faults() -> int:
    """Minor page faults of this process so far (memory the kernel had to map in, zeroed)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def engine_step(proj: Projector, targets: FrameTargets, prev: Tensor) -> Callable[[], tuple[float, int]]:
    """Seconds and page faults of the second step of a 2-step projection of frame 1 (a later frame's
    ordinary step; the progress callback reads the loss back, so the GPU has finished the step)."""

    def run() -> tuple[float, int]:
        stamps: list[tuple[float, int]] = []
        proj.project(1, targets, prev, on_step=lambda *_: stamps.append((time.perf_counter(), page_faults())),
                     report_every=1)
        return stamps[1][0] - stamps[0][0], stamps[1][1] - stamps[0][1]

    return run


def setup(cfg: AnimateConfig, gen: StyleGAN2Latents, net: torch.nn.Module, look: LPIPSLook | None,
          image: Tensor, **cuda: object) -> tuple[Callable[[], tuple[float, int]], dict[str, Callable[[], None]], int]:
    """The engine step of ``cfg`` (with ``cuda`` options of the schedule), the bare network passes it contains and
    its number of crops per step."""
    cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, steps=2, **cuda))
    device = image.device
    obj = LandmarkObjective(net, cfg.landmarks, device=device)
    centre, side = obj.framing(BOX.to(device))
    targets = obj.targets_from_points(obj.points(to_unit(image), centre, side), centre, side)
    look_target = look.prepare(image) if look is not None and cfg.loss.look > 0 else None
    identity = None
    if cfg.loss.identity > 0:
        points = face68(BOX).to(device)
        net_id = IdentityNet.load(weights.DEFAULTS["identity"]).to(device)
        identity = IdentityObjective.of_face(net_id, to_unit(image), points)
        targets = dataclasses.replace(targets, face68=points)
    proj = Projector(gen, obj, cfg.loss, cfg.schedule, look=look, look_target=look_target, identity=identity,
                     seed=0, device=device)
    prev = gen.mean_latent().reshape(1, 1, -1).expand(1, gen.num_ws, -1)[0].clone()
    crops = max(1, cfg.landmarks.jitter_count)
    s = net.input_size
    w = prev[None].clone().to(device)
    costs = {"generator": bare(gen.render, w),
             cfg.landmarks.net: bare(lambda x: net(x).points, torch.rand(crops, 3, s, s, device=device))}
    if look_target is not None:
        costs["lpips"] = bare(look.metric.features, image)
    if identity is not None:
        costs["identity"] = bare(identity.net.net, torch.rand(1, 3, CHIP_SIZE, CHIP_SIZE, device=device))
    return engine_step(proj, targets, prev), costs, crops


#: The schedule's CUDA options, measured one by one and together with ``--device cuda``.
CUDA_OPTIONS: dict[str, dict[str, object]] = {
    "bf16": {"cuda_autocast": "bf16"}, "channels-last": {"cuda_channels_last": True},
    "compile": {"cuda_compile": True},
    "all three": {"cuda_autocast": "bf16", "cuda_channels_last": True, "cuda_compile": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: adds the CUDA options' rows")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 5)
    device = torch_device(args.device)

    G = generator().to(device)
    gen = StyleGAN2Latents(G, "w+", compute_latent_stats(G, num_samples=1000))
    gen_w = StyleGAN2Latents(G, "w", gen.stats)
    torch.manual_seed(1)
    fan = FAN(4).eval().requires_grad_(False).to(device)
    mesh = load_mesh(MESH).requires_grad_(False).to(device)
    look = LPIPSLook(untrained_lpips("full").requires_grad_(False).to(device))
    with torch.no_grad():
        image = gen.render(gen.candidate_latents(1, torch.Generator().manual_seed(2)))

    free_mesh = preset("free")
    free_mesh = dataclasses.replace(free_mesh, landmarks=dataclasses.replace(free_mesh.landmarks, net="mesh"))
    setups = {"keep-identity+FAN": (preset("keep-identity"), gen, fan, look),
              "free+mesh": (free_mesh, gen_w, mesh, None)}
    cases = {name: setup(*args_, image) for name, args_ in setups.items()}
    if device.type == "cuda":
        cases.update({f"{name} ({option})": setup(*args_, image, **settings)
                      for name, args_ in setups.items() for option, settings in CUDA_OPTIONS.items()})

    steps: dict[str, list[float]] = {name: [] for name in cases}
    faults: dict[str, list[int]] = {name: [] for name in cases}
    costs: dict[str, dict[str, list[float]]] = {name: {k: [] for k in c[1]} for name, c in cases.items()}
    for step, parts, _ in cases.values():  # warm-up: allocator, first-call paths, compilation
        step()
        for fn in parts.values():
            fn()
    for r in range(rounds):
        for name, (step, parts, _) in cases.items():
            took, faulted = step()
            steps[name].append(took)
            faults[name].append(faulted)
            for part, fn in parts.items():
                costs[name][part].append(seconds(fn))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} step {steps[n][-1]:.3f} s" for n in cases), flush=True)

    load = os.getloadavg()[0]
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"{torch.get_num_threads()} thread(s) on {os.cpu_count()} cores ({platform.machine()})")
    print(f"\nOne optimisation step at 256², random weights; torch {torch.__version__}, {where}, load average "
          f"{load:.1f} at the end; medians of {rounds} interleaved rounds\n")
    print("| set-up | engine step (s) | bare networks (s) | overhead ratio (target ≤ 1.10) | page faults per step |")
    print("|---|---|---|---|---|")
    result: dict = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                    "cores": os.cpu_count(), "load_average": load, "rounds": rounds, "target": TARGET, "cases": {}}
    for name in cases:
        med = {part: statistics.median(v) for part, v in costs[name].items()}
        step = statistics.median(steps[name])
        total = sum(med.values())
        fault = int(statistics.median(faults[name]))
        parts = " + ".join(f"{part}{f' ×{cases[name][2]}' if part in ('fan', 'mesh') else ''} {v:.3f}"
                           for part, v in med.items())
        print(f"| {name} | {step:.3f} | {parts} = {total:.3f} | {step / total:.3f} | {fault} |")
        result["cases"][name] = {"step_seconds": step, "bare_seconds": med, "bare_total_seconds": total,
                                 "crops": cases[name][2], "overhead_ratio": step / total, "faults_per_step": fault}
    ki, free = result["cases"]["keep-identity+FAN"], result["cases"]["free+mesh"]
    fan_crop = ki["bare_seconds"]["fan"] / ki["crops"]
    mesh_crop = free["bare_seconds"]["mesh"] / free["crops"]
    result["overhead_ratio"] = max(ki["overhead_ratio"], free["overhead_ratio"])
    result["mesh_vs_fan"] = mesh_crop / fan_crop
    result["bare_seconds"] = {"generator": ki["bare_seconds"]["generator"], "lpips": ki["bare_seconds"]["lpips"],
                              "fan_per_crop": fan_crop, "mesh_per_crop": mesh_crop}
    print(f"\nlandmark net per crop (forward + backward): mesh {mesh_crop * 1000:.0f} ms, "
          f"FAN {fan_crop * 1000:.0f} ms: "
          f"mesh / FAN = {result['mesh_vs_fan']:.3f}; per step: mesh ×{free['crops']} "
          f"{free['bare_seconds']['mesh'] * 1000:.0f} ms, FAN ×{ki['crops']} {ki['bare_seconds']['fan'] * 1000:.0f} ms")
    print(f"overhead_ratio (worst fp32 set-up) {result['overhead_ratio']:.3f} (target ≤ {TARGET})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
