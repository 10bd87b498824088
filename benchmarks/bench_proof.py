"""The proof on real faces as one table: free mode on seven driving clips, judged by dlib (issue 13).

Free preset, the 64² DigiFace DCGAN with the MediaPipe mesh loss, the first 80 frames of each of the
seven clips in ``../shared/media`` (d0, d3, d11, d12, d13, d18, d20) at start seed 0, plus d0 and d3
at seeds 1 and 2. Each run is an ordinary ``animate`` run in its own folder (so an interrupted table
resumes, and a finished run is judged again only if its figures are missing), in ``--jobs`` worker
processes of one torch thread each. Each run is judged with the project's dlib evaluation
(:func:`stylepuppet.evaluation.evaluate_output`, 10 random walks) and the table gives, per run:

* the mouth-opening correlation with the driver and the random walks' median / 95th percentile;
* the mouth amplitude: the standard deviation of dlib's mouth-opening ratio on the output and on the
  driver, and their ratio;
* output frames in which dlib finds no face;
* landmark jitter of the output and the driver, and their ratio;
* identity drift (dlib descriptor distance to the first frame), median / max.

``--chain`` adds where the mouth amplitude goes, link by link, all in one unit (inner-lip height over
the inter-ocular distance, :func:`stylepuppet.face.motion.mouth_opening`): the driver read by dlib →
the driver read by the mesh as the targets are built (mean over jittered framings) → the same smoothed
over time (the track's σ) → the targets (relative motion laid on the start face) → the output read by
the mesh (the optimised latents) → the same after the latent filter (what is rendered) → the output
read by dlib. For each link: the amplitude (standard deviation over the clip) and the correlation
with the previous link.

    python benchmarks/bench_proof.py                      # the issue's table (11 runs of 6-8 min each on an idle core)
    python benchmarks/bench_proof.py --quick              # 40 frames
    python benchmarks/bench_proof.py --clips d0,d3 --seeds 0,1,2 --set loss.fidelity=0.5 --chain
    python benchmarks/bench_proof.py --json proof.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylepuppet.animation.networks import load_networks
from stylepuppet.animation.render import smooth_latents
from stylepuppet.animation.run import animate
from stylepuppet.animation.state import STATE, TARGETS, RunState
from stylepuppet.animation.targets import READ_FRAMINGS, READ_SCALE, READ_SHIFT, Targets, _framing, driver_points
from stylepuppet.config import config_from_dict, resolve_config
from stylepuppet.evaluation.measures import pearson
from stylepuppet.evaluation.report import evaluate_output
from stylepuppet.face.align import to_aligned
from stylepuppet.face.motion import mouth_opening
from stylepuppet.face.smoothing import gaussian_smooth
from stylepuppet.face.track import FaceTrack
from stylepuppet.images import to_unit
from stylepuppet.landmarks.framing import box_from_points
from stylepuppet.landmarks.net import jittered_points
from stylepuppet.landmarks.scheme import GROUPS
from stylepuppet.optim.objective import LandmarkObjective

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = ("d0", "d3", "d11", "d12", "d13", "d18", "d20")
#: Clips also run at the extra start seeds (the start face is chosen with the seed).
SEEDED_CLIPS = ("d0", "d3")
EXTRA_SEEDS = (1, 2)
FRAMES, QUICK_FRAMES = 80, 40
WALKS = 10
#: The issue's targets.
LEAST_CORRELATION = 0.7
LEAST_AMPLITUDE = 0.5
LEAST_FOUND = 0.95
MOST_JITTER = 1.5
#: What a run's figures are cached under in its folder (recomputed when absent).
FIGURES = "proof.json"
CHAIN = "chain.json"
LINKS = ("driver dlib", "driver mesh", "smoothed", "targets", "output mesh", "filtered", "output dlib")


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML reads it (numbers, true/false, quoted strings), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value, e.g. loss.fidelity=0.5")
        out[key.strip()] = parse_value(value.strip())
    return out


def settings_name(overrides: dict[str, Any], preset: str = "free") -> str:
    """The folder name of a setting: the preset's name, or it + the overrides (hashed when long)."""
    if not overrides:
        return preset
    text = "_".join(f"{k}={v}" for k, v in sorted(overrides.items())).replace("/", "-").replace(" ", "")
    return f"{preset}_{text}" if len(text) <= 80 else f"{preset}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def run_config(clip: str, seed: int, frames: int, overrides: dict[str, Any], models: Path, preset: str = "free"):
    """The config of one run: ``preset`` on the DCGAN + mesh in ``models``, ``frames`` frames, start ``seed``."""
    base = {"network": str(models / "digiface_dcgan64_G.pt"), "landmarks.net": "mesh",
            "landmarks.weights": str(models / "face_landmark.tflite"), "subframes": 1, "max_frames": frames,
            "seed": seed}
    return resolve_config(preset, None, {**base, **overrides})


def _init_worker() -> None:
    torch.set_num_threads(1)


def _std(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x)) if x.size > 2 else float("nan")


@torch.no_grad()
def read_points(net, images01: torch.Tensor, centre: torch.Tensor, side: torch.Tensor) -> np.ndarray:
    """The landmark net's points [T, P, 2] of images [T, 3, R, R] in [0, 1] framed at ``centre`` [T, 2] /
    ``side`` [T], the mean over jittered framings seeded by the frame index, as the driver's points are
    read when the targets are built (:func:`stylepuppet.animation.targets.driver_points`)."""
    out = [jittered_points(net, images01[t:t + 1], centre[t:t + 1], side[t:t + 1], torch.Generator().manual_seed(t),
                           READ_SHIFT, READ_SCALE, READ_FRAMINGS).mean(dim=0)[0] for t in range(len(images01))]
    return torch.stack(out).numpy()


def chain(out: Path, driving: Path, cfg, evaluation) -> dict[str, Any]:
    """Amplitude (std of inner-lip height / inter-ocular distance) and neighbour correlation at each link."""
    nets = load_networks(cfg)
    gen = nets.generator
    obj = LandmarkObjective(nets.landmark_net, cfg.landmarks)
    groups = obj.net.groups
    size = gen.img_resolution
    track = FaceTrack.load(out / "track.npz")
    targets = Targets.load(out / TARGETS)
    quads = np.asarray(track.quads, dtype=np.float64)
    aligned = to_aligned(np.asarray(track.landmarks, dtype=np.float64), quads, size)
    boxes = box_from_points(torch.as_tensor(aligned, dtype=torch.float32)).numpy()
    centres, sides = _framing(obj, boxes, torch.device("cpu"))
    driver = driver_points(obj.net, driving, cfg.start, quads, centres, sides, size, torch.device("cpu"))
    smoothed = gaussian_smooth(driver, cfg.track.smooth)
    state = RunState.load(out / STATE)
    raw = torch.stack(state.ws)
    filtered = smooth_latents(raw, cfg.latent_smooth, gen)
    c = torch.as_tensor(targets.centres)
    s = torch.as_tensor(targets.sides)
    with torch.no_grad():
        out_raw = read_points(obj.net, to_unit(gen.render(raw)), c, s)
        out_filtered = read_points(obj.net, to_unit(gen.render(filtered)), c, s)
    series = [mouth_opening(evaluation.driver.points, GROUPS), mouth_opening(driver, groups),
              mouth_opening(smoothed, groups), mouth_opening(targets.points, groups),
              mouth_opening(out_raw, groups), mouth_opening(out_filtered, groups),
              mouth_opening(evaluation.output.points, GROUPS)]
    links = []
    for k, (name, x) in enumerate(zip(LINKS, series)):
        links.append({"link": name, "amplitude": _std(x),
                      "correlation": None if k == 0 else pearson(series[k - 1], x),
                      "with_driver": None if k == 0 else pearson(series[0], x)})
    return {"links": links, "series": [np.asarray(x, dtype=float).tolist() for x in series]}


def run_one(clip: str, seed: int, frames: int, overrides: dict[str, Any], folder: str, want_chain: bool,
            preset: str = "free", restart: bool = False) -> dict:
    """Animate (or resume; ``restart``: redo) one run, judge it and return its figures (cached in the run
    folder). The figures keep the run's wall time by stage and its steps (whole only if not resumed)."""
    out = Path(folder)
    driving = SHARED / "media" / f"{clip}.mp4"
    cfg = run_config(clip, seed, frames, overrides, SHARED / "models", preset)
    cached = out / FIGURES
    config_text = cfg.to_json()
    figures = None
    if cached.is_file():
        figures = json.loads(cached.read_text())
        # read through config_from_dict, so a setting added since takes its default
        if (config_from_dict(json.loads(figures["config"])).to_json() != config_text
                or (want_chain and not (out / CHAIN).is_file())):
            figures = None
    if figures is not None:
        if want_chain:
            figures["chain"] = json.loads((out / CHAIN).read_text())
        return figures
    load_before = os.getloadavg()
    began = time.perf_counter()
    result = animate(cfg, driving, out, restart=restart, progress=False)
    seconds = time.perf_counter() - began
    load_after = os.getloadavg()
    evaluation = evaluate_output(out, driving, walks=WALKS)
    drv, opt = evaluation.driver_ratio, evaluation.output_ratio
    dist = evaluation.identity_distance[np.isfinite(evaluation.identity_distance)]
    figures = {
        "clip": clip, "seed": seed, "frames": evaluation.frames, "config": config_text,
        "settings": overrides, "animate_seconds": seconds, "resumed_from": result.resumed_from,
        "stage_seconds": result.stages.wall, "stage_cpu_seconds": result.stages.cpu, "steps": result.steps,
        "load_before": load_before,
        "load_after": load_after, "torch": torch.__version__,
        "correlation": evaluation.correlation, "walk_median": evaluation.walk_median,
        "walk_p95": evaluation.walk_p95, "driver_amplitude": _std(drv), "output_amplitude": _std(opt),
        "missed": evaluation.output.missed, "driver_missed": evaluation.driver.missed,
        "output_jitter": evaluation.output_jitter, "driver_jitter": evaluation.driver_jitter,
        "identity_median": float(np.median(dist)) if dist.size else math.nan,
        "identity_max": float(np.max(dist)) if dist.size else math.nan,
        "driver_ratio": drv.tolist(), "output_ratio": opt.tolist(),
    }
    if want_chain:
        figures["chain"] = chain(out, driving, cfg, evaluation)
        (out / CHAIN).write_text(json.dumps(figures["chain"]) + "\n")
    cached.write_text(json.dumps({k: v for k, v in figures.items() if k != "chain"}) + "\n")
    return figures


def verdict(r: dict) -> list[str]:
    """The issue's targets this run misses (empty: all met)."""
    misses = []
    if not (r["correlation"] >= LEAST_CORRELATION and r["correlation"] > r["walk_p95"]):
        misses.append("corr")
    if not r["output_amplitude"] >= LEAST_AMPLITUDE * r["driver_amplitude"]:
        misses.append("amp")
    if not r["missed"] <= (1 - LEAST_FOUND) * r["frames"]:
        misses.append("face")
    if not r["output_jitter"] <= MOST_JITTER * r["driver_jitter"]:
        misses.append("jitter")
    return misses


def table(results: list[dict]) -> list[str]:
    lines = ["| clip | seed | correlation | walks median / p95 | amplitude out / driver (ratio) | no face | "
             "jitter out / driver (ratio) | identity drift median / max | misses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['clip']} | {r['seed']} | {r['correlation']:.2f} | {r['walk_median']:.2f} / {r['walk_p95']:.2f} | "
            f"{r['output_amplitude']:.3f} / {r['driver_amplitude']:.3f} "
            f"({r['output_amplitude'] / r['driver_amplitude']:.2f}) | {r['missed']} | "
            f"{r['output_jitter']:.4f} / {r['driver_jitter']:.4f} ({r['output_jitter'] / r['driver_jitter']:.2f}) | "
            f"{r['identity_median']:.2f} / {r['identity_max']:.2f} | {', '.join(verdict(r)) or '-'} |")
    return lines


def chain_table(results: list[dict]) -> list[str]:
    lines = ["| clip | seed | " + " | ".join(LINKS) + " |", "|---|---|" + "---|" * len(LINKS)]
    for r in results:
        links = r["chain"]["links"]
        cells = [f"{links[0]['amplitude']:.3f}"]
        cells += [f"{x['amplitude']:.3f} ({x['correlation']:.2f})" for x in links[1:]]
        lines.append(f"| {r['clip']} | {r['seed']} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FRAMES} frames per clip instead of {FRAMES}")
    parser.add_argument("--frames", type=int, help="frames per clip (overrides --quick)")
    parser.add_argument("--clips", default=",".join(CLIPS), help="comma-separated clip names (default: all seven)")
    parser.add_argument("--seeds", help="comma-separated start seeds for every clip (default: 0, and 1, 2 on d0, d3)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the free preset (repeatable), e.g. loss.fidelity=0.5")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each (default 2)")
    parser.add_argument("--chain", action="store_true", help="also split the mouth amplitude link by link")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_proof", help="folder of the runs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # the spawned workers inherit it before they import torch
    torch.set_num_threads(1)
    frames = args.frames or (QUICK_FRAMES if args.quick else FRAMES)
    clips = [c.strip() for c in args.clips.split(",") if c.strip()]
    unknown = [c for c in clips if not (SHARED / "media" / f"{c}.mp4").is_file()]
    if unknown:
        raise SystemExit(f"no clip {', '.join(unknown)} in {SHARED / 'media'}")
    if args.seeds:
        runs = [(c, int(s)) for c in clips for s in args.seeds.split(",")]
    else:
        runs = [(c, 0) for c in clips] + [(c, s) for s in EXTRA_SEEDS for c in clips if c in SEEDED_CLIPS]
    overrides = parse_sets(args.sets)
    run_config(clips[0], 0, frames, overrides, SHARED / "models")  # a bad --set fails here, not in a worker
    name = settings_name(overrides)
    folder = args.out / name

    began = time.perf_counter()
    results: dict[tuple[str, int], dict] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(run_one, c, s, frames, overrides, str(folder / f"{c}-s{s}-f{frames}"), args.chain):
                   (c, s) for c, s in runs}
        for future in as_completed(futures):
            clip, seed = futures[future]
            try:
                r = future.result()
            except Exception as exc:  # one failed run (e.g. its folder holds other settings) must not lose the rest
                print(f"{clip} seed {seed}: FAILED ({type(exc).__name__}: {exc})", flush=True)
                continue
            results[futures[future]] = r
            print(f"{r['clip']} seed {r['seed']}: correlation {r['correlation']:.3f} (walks p95 {r['walk_p95']:.2f}), "
                  f"amplitude {r['output_amplitude'] / r['driver_amplitude']:.2f}, no face {r['missed']}, "
                  f"jitter {r['output_jitter'] / r['driver_jitter']:.2f}, {r['animate_seconds']:.0f} s", flush=True)
    ordered = [results[k] for k in runs if k in results]
    if not ordered:
        raise SystemExit("no run finished")
    load = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nProof on real faces, {name} ({', '.join(f'{k}={v}' for k, v in overrides.items()) or 'free preset'}), "
          f"{frames} frames per clip; {stamp}, {args.jobs} job(s) of 1 torch thread on {os.cpu_count()} cores "
          f"({platform.machine()}), load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, "
          f"{time.perf_counter() - began:.0f} s\n")
    print("\n".join(table(ordered)))
    met = [r for r in ordered if not verdict(r)]
    print(f"\n{len(met)} of {len(ordered)} runs meet every target (correlation ≥ {LEAST_CORRELATION} and above the "
          f"walks' p95, amplitude ≥ {LEAST_AMPLITUDE:.0%} of the driver's, a face in ≥ {LEAST_FOUND:.0%} of frames, "
          f"jitter ≤ {MOST_JITTER}× the driver's)")
    if args.chain:
        print("\nMouth amplitude link by link (std of inner-lip height / inter-ocular distance; in brackets the "
              "correlation with the previous link):\n")
        print("\n".join(chain_table(ordered)))
    if args.json:
        args.json.write_text(json.dumps({"settings": overrides, "frames": frames, "date": stamp,
                                         "load_average": load, "runs": ordered}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
