"""Bare cost of the StyleGAN2 generator on this machine: the yardstick other benchmarks divide by.

Times G.synthesis forward (no_grad) and forward + backward to a W+ latent (network frozen, noise
const, as in projection) for batch 1 and 4, at 256² (paper256: channel_base 16384) and 1024²
(config F: channel_base 32768), with random weights (same cost as trained ones). Each case runs
warm-up iterations, then ``--repeats`` timed ones; the table shows min / median seconds, seconds
per image, and the backward-pass factor (fwd+bwd / fwd).

    python benchmarks/bench_generator.py            # 256 and 1024, batch 1 and 4
    python benchmarks/bench_generator.py --quick    # 256 only, fewer repeats
    python benchmarks/bench_generator.py --json out.json
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

import torch

from stylepuppet.generators.stylegan2 import Generator

CONFIGS = {256: ("paper256", 16384), 1024: ("config F", 32768)}


def build(resolution: int) -> Generator:
    """A random-weight generator with the official config's widths (fp32, conv_clamp 256 as in the pickles)."""
    _, base = CONFIGS[resolution]
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": base, "channel_max": 512, "conv_clamp": 256})
    return G.eval().requires_grad_(False)


def timed(fn: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_case(G: Generator, batch: int, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Forward and forward+backward timings for one batch size."""
    torch.manual_seed(1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(batch, G.z_dim), torch.zeros(batch, 0))
    ws_var = ws.clone().requires_grad_(True)

    def forward() -> None:
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")

    def forward_backward() -> None:
        ws_var.grad = None
        G.synthesis(ws_var, noise_mode="const").square().mean().backward()

    return {"forward": timed(forward, warmup, repeats), "forward_backward": timed(forward_backward, warmup, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256² only, 2 repeats")
    parser.add_argument("--repeats", type=int, help="timed repeats per case (default 3, quick 2)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    sizes = [256] if args.quick else [256, 1024]

    results = []
    for res in sizes:
        G = build(res)
        for batch in (1, 4):
            t = bench_case(G, batch, args.warmup, repeats)
            results.append({"resolution": res, "config": CONFIGS[res][0], "batch": batch, **t})
            fwd, fb = statistics.median(t["forward"]), statistics.median(t["forward_backward"])
            print(f"  {res}² batch {batch}: forward {fwd:.2f} s, forward+backward {fb:.2f} s", flush=True)
        del G

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nStyleGAN2 synthesis, torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} "
          f"cores (load average {load:.1f} at the end: other work skews the figures); seconds min / median of "
          f"{repeats}\n")
    header = "| config | res | batch | forward | fwd+bwd | fwd+bwd per image | bwd factor |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in results:
        f_min, f_med = min(r["forward"]), statistics.median(r["forward"])
        b_min, b_med = min(r["forward_backward"]), statistics.median(r["forward_backward"])
        print(f"| {r['config']} | {r['resolution']} | {r['batch']} | {f_min:.2f} / {f_med:.2f} | "
              f"{b_min:.2f} / {b_med:.2f} | {b_med / r['batch']:.2f} | {b_med / f_med:.1f} |")
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                "load_average": load, "repeats": repeats, "warmup": args.warmup, "machine": platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
