"""Real-network convergence: free mode's 40-step schedule against a faster one (issue 16).

The 64² DigiFace DCGAN with the MediaPipe mesh loss, driven by the first 80 frames of
``../shared/media/d3.mp4`` (``--quick``: 40) at start seed 0. Two ordinary ``animate`` runs, one after the
other (one torch thread: the machine is shared): the reference, ``free-fast``'s objective and start face
on the 40-step schedule it was made from (:data:`REFERENCE_SETTINGS`: the ``free`` preset as it stood
before issue 13 added its start-face and identity pieces), and the fast one (the ``free-fast`` preset, or
``--fast PRESET`` with ``--set`` overrides for experiments). Each run is
judged by the project's dlib evaluation (:func:`stylepuppet.evaluation.evaluate_output`, through
``bench_proof.run_one``): the mouth-opening correlation with the driver, the output's landmark jitter.

What is timed: the run's stages (:attr:`stylepuppet.animation.run.AnimateResult.stages`), in wall and
CPU seconds. The start face's choice (scoring 256 candidates, then rehearsing the best 8) is a fixed cost
of a run, paid once whatever its length, and is reported apart; the speed-up is the per-frame
optimisation's wall time, reference over fast (its CPU-time ratio is printed beside it: on a shared
machine it moves less with the load). Targets: speed-up ≥ 2 at a dlib correlation no more than 0.03
below the reference's and no more output jitter.

Each run keeps its own folder under ``--out`` (``PRESET[_overrides]/CLIP-sSEED-fFRAMES``) with its
figures, so a rerun reuses a finished run; an unfinished one is redone from the start, since a resumed
run's wall time would be partial. Wall times move with the machine's load (printed, and kept per run).

    python benchmarks/bench_real_convergence.py                  # 80 frames of d3 (~15 min on an idle core)
    python benchmarks/bench_real_convergence.py --quick          # 40 frames
    python benchmarks/bench_real_convergence.py --quick --clip d0
    python benchmarks/bench_real_convergence.py --quick --set schedule.steps=20
    python benchmarks/bench_real_convergence.py --json real.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from bench_proof import SHARED, parse_sets, run_config, run_one, settings_name

from stylepuppet.config import PRESETS

REPO = Path(__file__).resolve().parents[1]
FRAMES, QUICK_FRAMES = 80, 40
#: The issue's targets: per-frame optimisation this many times faster, the dlib correlation at most this
#: far below the reference's, and no more output jitter than the reference's.
LEAST_SPEEDUP = 2.0
MOST_CORRELATION_LOSS = 0.03
REFERENCE = "free-fast"
#: The reference's schedule and filter: free's 40 steps from the previous latent, latent filter σ 0.5.
REFERENCE_SETTINGS: dict[str, Any] = {"schedule.steps": 40, "schedule.predict": False, "latent_smooth": 0.5}
FAST = "free-fast"
#: The start-face stages of :attr:`~stylepuppet.animation.run.AnimateResult.stage_seconds`.
START_STAGES = ("start_scoring", "start_rehearsal")


def start_seconds(figures: dict[str, Any], key: str = "stage_seconds") -> float:
    """The start face's fixed cost of a run: candidate scoring + rehearsal, in wall seconds (``key``
    ``stage_cpu_seconds``: CPU seconds)."""
    return sum(figures[key].get(k, math.nan) for k in START_STAGES)


def compare(reference: dict[str, Any], fast: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures of a fast run against the reference run (each :func:`bench_proof.run_one`'s figures):
    speed-up of the per-frame optimisation, dlib correlations and output jitters, and which targets it misses."""
    speedup = reference["stage_seconds"]["frames"] / fast["stage_seconds"]["frames"]
    result = {"real_speedup": speedup,
              "real_cpu_speedup": reference["stage_cpu_seconds"]["frames"] / fast["stage_cpu_seconds"]["frames"],
              "real_step_ratio": reference["steps"] / fast["steps"],
              "real_corr_reference": reference["correlation"], "real_corr_fast": fast["correlation"],
              "real_jitter_reference": reference["output_jitter"], "real_jitter_fast": fast["output_jitter"]}
    misses = []
    if not speedup >= LEAST_SPEEDUP:
        misses.append("speed")
    if not fast["correlation"] >= reference["correlation"] - MOST_CORRELATION_LOSS:
        misses.append("correlation")
    if not fast["output_jitter"] <= reference["output_jitter"]:
        misses.append("jitter")
    result["misses"] = misses
    return result


def table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The markdown table of the runs (label, figures)."""
    lines = ["| run | start scoring (s) | start rehearsal (s) | per-frame optimisation (s; CPU s) | s / frame | "
             "steps | dlib correlation (walks p95) | jitter out / driver | identity drift median | "
             "load before / after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows:
        stages = r["stage_seconds"]
        lines.append(
            f"| {label} | {stages.get('start_scoring', math.nan):.1f} | "
            f"{stages.get('start_rehearsal', math.nan):.1f} | {stages['frames']:.1f}; "
            f"{r['stage_cpu_seconds']['frames']:.1f} | {stages['frames'] / r['frames']:.2f} | {r['steps']} | "
            f"{r['correlation']:.3f} ({r['walk_p95']:.2f}) | {r['output_jitter']:.4f} / {r['driver_jitter']:.4f} | "
            f"{r['identity_median']:.2f} | {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FRAMES} frames instead of {FRAMES}")
    parser.add_argument("--frames", type=int, help="frames (overrides --quick)")
    parser.add_argument("--clip", default="d3", help="driving clip in ../shared/media (default d3)")
    parser.add_argument("--seed", type=int, default=0, help="start seed (default 0)")
    parser.add_argument("--fast", default=FAST, choices=PRESETS, help=f"preset of the fast run (default {FAST})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of the fast run (repeatable), e.g. schedule.steps=15")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_real_convergence", help="folder of the runs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = args.frames or (QUICK_FRAMES if args.quick else FRAMES)
    if not (SHARED / "media" / f"{args.clip}.mp4").is_file():
        raise SystemExit(f"no clip {args.clip} in {SHARED / 'media'}")
    overrides = parse_sets(args.sets)
    # a bad --set fails here, before the reference's minutes
    fast_cfg = run_config(args.clip, args.seed, frames, overrides, SHARED / "models", args.fast)
    runs = {"reference": (REFERENCE, REFERENCE_SETTINGS), "fast": (args.fast, overrides)}

    began = time.perf_counter()
    figures: dict[str, dict[str, Any]] = {}
    for role, (name, sets) in runs.items():
        folder = args.out / settings_name(sets, name) / f"{args.clip}-s{args.seed}-f{frames}"
        cached = folder / "proof.json"
        stamp_before = cached.stat().st_mtime_ns if cached.is_file() else None
        # restart: an interrupted run resumed would time only its rest
        r = run_one(args.clip, args.seed, frames, sets, str(folder), False, preset=name, restart=True)
        figures[role] = r
        reused = stamp_before is not None and cached.stat().st_mtime_ns == stamp_before
        print(f"{role} ({settings_name(sets, name)}){' (finished before)' if reused else ''}: "
              f"frames {r['stage_seconds']['frames']:.0f} s, start face {start_seconds(r):.0f} s, "
              f"{r['steps']} steps, correlation {r['correlation']:.3f}, jitter {r['output_jitter']:.4f}", flush=True)
    summary = compare(figures["reference"], figures["fast"])
    load = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nReal-network convergence, {args.clip} seed {args.seed}, {frames} frames (DigiFace DCGAN 64² + mesh); "
          f"{stamp}; torch {torch.__version__}, 1 thread on {os.cpu_count()} cores ({platform.machine()}), "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, {time.perf_counter() - began:.0f} s\n")
    print("\n".join(table([(f"reference: {settings_name(REFERENCE_SETTINGS, REFERENCE)}", figures["reference"]),
                           (f"fast: {settings_name(overrides, args.fast)}", figures["fast"])])))
    verdict = ", ".join(summary["misses"]) or "none"
    print(f"\nspeed-up of the per-frame optimisation {summary['real_speedup']:.2f}× (target ≥ {LEAST_SPEEDUP}; "
          f"CPU time {summary['real_cpu_speedup']:.2f}×; steps "
          f"{summary['real_step_ratio']:.2f}× fewer); dlib correlation {summary['real_corr_fast']:.3f} vs "
          f"{summary['real_corr_reference']:.3f} (at most {MOST_CORRELATION_LOSS} below); jitter "
          f"{summary['real_jitter_fast']:.4f} vs {summary['real_jitter_reference']:.4f} (no more); missed: {verdict}")
    if args.json:
        result = {**summary, "clip": args.clip, "seed": args.seed, "frames": frames, "date": stamp,
                  "torch": torch.__version__, "load_average": load,
                  "fast_preset": args.fast, "fast_overrides": overrides,
                  "fast_schedule": fast_cfg.to_dict()["schedule"],
                  "fast_jitter_count": fast_cfg.landmarks.jitter_count,
                  **{f"{role}_frames_seconds": r["stage_seconds"]["frames"] for role, r in figures.items()},
                  **{f"{role}_frames_cpu_seconds": r["stage_cpu_seconds"]["frames"] for role, r in figures.items()},
                  **{f"{role}_start_seconds": start_seconds(r) for role, r in figures.items()},
                  **{f"{role}_start_cpu_seconds": start_seconds(r, "stage_cpu_seconds") for role, r in figures.items()},
                  **{f"{role}_steps": r["steps"] for role, r in figures.items()},
                  "runs": figures}
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
