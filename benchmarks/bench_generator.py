"""Bare cost of the generators on this machine: StyleGAN2, the yardstick other benchmarks divide by,
and StyleGAN3 T and R beside it at the same resolution.

Times G.synthesis forward (no_grad) and forward + backward to a W+ latent (network frozen, noise
const, as in projection), with random weights (same cost as trained ones), at 256² and 1024²:
StyleGAN2 with the official configs (paper256: channel_base 16384; config F: 32768), StyleGAN3 with
the configs of NVIDIA's release networks at that size (ffhqu-256: channel_base 16384; ffhq-1024:
32768; R doubles the channels). Each case runs warm-up iterations, then ``--repeats`` timed ones; the
table shows min / median seconds, seconds per image, the backward-pass factor (fwd+bwd / fwd) and
each network's median cost relative to StyleGAN2's at the same resolution and batch (same run).

    python benchmarks/bench_generator.py            # 256 and 1024, batch 1 and 4 (StyleGAN3 at 1024: batch 1)
    python benchmarks/bench_generator.py --quick    # 256 only, batch 1, fewer repeats
    python benchmarks/bench_generator.py --networks stylegan2,stylegan3-t --json out.json
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
from torch import nn

from stylepuppet.generators import stylegan2, stylegan3

SG2_CONFIGS = {256: ("paper256", 16384), 1024: ("config F", 32768)}
SG3_CHANNEL_BASE = {256: 16384, 1024: 32768}  # NVIDIA's ffhqu-256 and ffhq-1024 networks
NETWORKS = ("stylegan2", "stylegan3-t", "stylegan3-r")


def build(network: str, resolution: int) -> nn.Module:
    """A random-weight generator with the official config's widths (fp32, conv_clamp 256 as in the pickles)."""
    torch.manual_seed(0)
    if network == "stylegan2":
        G = stylegan2.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution,
                                mapping_kwargs={"num_layers": 8},
                                synthesis_kwargs={"channel_base": SG2_CONFIGS[resolution][1], "channel_max": 512,
                                                  "conv_clamp": 256})
    else:
        G = stylegan3.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution,
                                synthesis_kwargs=stylegan3.nvidia_synthesis_kwargs(network[-1],
                                                                                   SG3_CHANNEL_BASE[resolution]))
    return G.eval().requires_grad_(False)


def config_name(network: str, resolution: int) -> str:
    if network == "stylegan2":
        return f"StyleGAN2 {SG2_CONFIGS[resolution][0]}"
    return f"StyleGAN3-{network[-1].upper()}"


def timed(fn: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_case(G: nn.Module, batch: int, warmup: int, repeats: int) -> dict[str, list[float]]:
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
    parser.add_argument("--quick", action="store_true", help="256² only, batch 1, 2 repeats")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated subset of {NETWORKS}")
    parser.add_argument("--sizes", help="comma-separated resolutions (256, 1024; default both, quick 256)")
    parser.add_argument("--repeats", type=int, help="timed repeats per case (default 3, quick 2)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    networks = [n for n in args.networks.split(",") if n]
    if not set(networks) <= set(NETWORKS):
        parser.error(f"--networks: choose from {', '.join(NETWORKS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([256] if args.quick else [256, 1024])
    if not set(sizes) <= set(SG2_CONFIGS):
        parser.error(f"--sizes: choose from {', '.join(map(str, SG2_CONFIGS))}")

    results = []
    for res in sizes:
        for network in networks:
            G = build(network, res)
            # StyleGAN3's backward pass at 1024² holds several GB per image: batch 1 only there
            batches = (1,) if args.quick or (network != "stylegan2" and res == 1024) else (1, 4)
            for batch in batches:
                t = bench_case(G, batch, args.warmup, repeats)
                results.append({"network": network, "config": config_name(network, res), "resolution": res,
                                 "batch": batch, **t})
                fwd, fb = statistics.median(t["forward"]), statistics.median(t["forward_backward"])
                print(f"  {network} {res}² batch {batch}: forward {fwd:.2f} s, forward+backward {fb:.2f} s", flush=True)
            del G

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nsynthesis, torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} "
          f"cores (load average {load:.1f} at the end: other work skews the figures); seconds min / median of "
          f"{repeats}; 'x SG2' = median relative to StyleGAN2 at the same resolution and batch\n")
    header = ("| network | res | batch | forward | fwd+bwd | fwd+bwd per image | bwd factor | forward x SG2 "
              "| fwd+bwd x SG2 |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    baseline = {(r["resolution"], r["batch"]): r for r in results if r["network"] == "stylegan2"}
    for r in results:
        f_min, f_med = min(r["forward"]), statistics.median(r["forward"])
        b_min, b_med = min(r["forward_backward"]), statistics.median(r["forward_backward"])
        base = baseline.get((r["resolution"], r["batch"]))
        ratios = ("-", "-") if base is None else (
            f"{f_med / statistics.median(base['forward']):.1f}",
            f"{b_med / statistics.median(base['forward_backward']):.1f}")
        print(f"| {r['config']} | {r['resolution']} | {r['batch']} | {f_min:.2f} / {f_med:.2f} | "
              f"{b_min:.2f} / {b_med:.2f} | {b_med / r['batch']:.2f} | {b_med / f_med:.1f} | "
              f"{ratios[0]} | {ratios[1]} |")
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                "load_average": load, "repeats": repeats, "warmup": args.warmup, "machine": platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
