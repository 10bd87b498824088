"""The evaluation report: OUT/report.json (every figure, per-frame series included) and OUT/report.html.

The HTML page is one self-contained file: its plots are PNGs embedded as data URIs and its style
is inline, so it opens offline, from an e-mail attachment or a copied folder alike.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stylepuppet import atomic
from stylepuppet.animation.outputs import REPORT_HTML, REPORT_JSON
from stylepuppet.config import AnimateConfig
from stylepuppet.evaluation import plots
from stylepuppet.evaluation.figures import Evaluation, Identity, distance_summary
from stylepuppet.evaluation.measures import jitter_series
from stylepuppet.evaluation.panels import face_window, picture_box


def _clean(value: Any) -> Any:
    """JSON-ready: arrays to lists, numpy scalars to Python, NaN and infinities to null (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def extreme_frames(driver_ratio: np.ndarray) -> list[tuple[str, int]]:
    """(label, frame) of the driver's widest and narrowest mouth; empty when dlib saw no mouth."""
    if not np.isfinite(driver_ratio).any():
        return []
    return [("widest", int(np.nanargmax(driver_ratio))), ("narrowest", int(np.nanargmin(driver_ratio)))]


def _identity_figures(judged: Identity) -> dict[str, Any]:
    return {"same_person_below": judged.threshold, "to_first": distance_summary(judged.to_first, judged.threshold),
            "to_look": distance_summary(judged.to_look, judged.threshold),
            "driver_to_first": distance_summary(judged.driver_to_first, judged.threshold)}


def report_data(evaluation: Evaluation, terms: Mapping[str, np.ndarray], cfg: AnimateConfig, *,
                driving: Path, fps: float) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-ready values (NaN as None)."""
    ev = evaluation
    data = {
        "run": {"driving": str(driving), "start": cfg.start, "fps": fps, "mode": cfg.mode, "network": cfg.network,
                "space": cfg.space, "landmark_net": cfg.landmarks.net},
        "lines": ev.lines(),
        "notes": list(ev.notes),
        "figures": {
            "frames": ev.frames,
            "driver_frames_without_face": ev.driver.missed,
            "output_frames_without_face": ev.output.missed,
            "correlation": ev.correlation,
            "walks": {"count": len(ev.walk_correlations), "median": ev.walk_median, "p95": ev.walk_p95,
                      "frames_without_face": ev.walk_missed},
            "identity": {judged.judge: _identity_figures(judged) for judged in ev.identity},
            "jitter": {"output": ev.output_jitter, "driver": ev.driver_jitter},
        },
        "series": {
            "driver_mouth_ratio": ev.driver_ratio,
            "output_mouth_ratio": ev.output_ratio,
            "walk_correlations": ev.walk_correlations,
            "identity": {judged.judge: {"to_first": judged.to_first, "to_look": judged.to_look,
                                        "driver_to_first": judged.driver_to_first}
                         for judged in ev.identity},
            "output_jitter": jitter_series(ev.output.points),
            "driver_jitter": jitter_series(ev.driver.points),
            "loss": {name: np.asarray(values, dtype=np.float64) for name, values in terms.items()},
        },
        "strip": dict(extreme_frames(ev.driver_ratio)),
    }
    return _clean(data)


@dataclass(frozen=True)
class Plot:
    """One figure of the page."""

    title: str
    caption: str
    png: bytes


def _judges(judged: Sequence[Identity]) -> str:
    names = {"dlib": "dlib's face descriptor", "FaceNet": "FaceNet (in no loss)"}
    return " and ".join(names.get(j.judge, j.judge) for j in judged)


def report_plots(evaluation: Evaluation, terms: Mapping[str, np.ndarray], driver_frames: Sequence[np.ndarray],
                 outputs: np.ndarray, start: int) -> list[Plot]:
    """The report's figures, in page order."""
    ev = evaluation
    figures = [
        Plot("Mouth opening", "dlib's inner-lip gap over mouth width, driver and output, frame by frame; "
             "the output follows the driver when the two curves rise and fall together.",
             plots.png_bytes(plots.mouth_plot(ev.driver_ratio, ev.output_ratio, ev.correlation, start))),
        Plot("Chance baseline", "The same correlation for random latent walks that take the run's step sizes in "
             "random directions: a run is evidence of following only when it beats the walks' upper percentiles.",
             plots.png_bytes(plots.walks_plot(ev.walk_correlations, ev.correlation))),
        Plot("Loss terms", "Each frame's loss terms after its last optimisation step, unweighted (from latents.npz).",
             plots.png_bytes(plots.loss_plot(terms, start))),
        Plot("Identity", "Distance of each output frame's face to the first output frame's (drift)"
             f"{' and to the look image' if any(j.to_look is not None for j in ev.identity) else ''}, "
             f"by {_judges(ev.identity)}; below its dashed line a judge calls two faces the same person. "
             "The driver's own drift, a real person's as they talk, is the scale to read the output's against.",
             plots.png_bytes(plots.identity_plot(ev.identity, start))),
        Plot("Landmark jitter", "How far each frame's 68 dlib points sit off the midpoint of their neighbours, in "
             "inter-ocular distances: shaking, not motion (a steady or evenly moving face scores 0).",
             plots.png_bytes(plots.jitter_plot(jitter_series(ev.output.points), jitter_series(ev.driver.points),
                                               start))),
    ]
    picks = extreme_frames(ev.driver_ratio)
    if picks:
        window = face_window(ev.driver.points, picture_box(driver_frames))
        figures.append(Plot("Frames", "The driving frame (cut to the face) and the output at the driver's widest and "
                           "narrowest mouth.",
                           plots.png_bytes(plots.strip_plot(driver_frames, outputs, window, picks, ev.driver_ratio,
                                                            ev.output_ratio))))
    return figures


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 0.3rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1rem 0; }
td, th { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem 0.3rem 0; text-align: left; vertical-align: top; }
figure { margin: 0; }
figcaption { color: #555; font-size: 0.9rem; margin-bottom: 0.4rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
footer { color: #777; font-size: 0.85rem; margin-top: 2rem; }
"""


def render_html(data: Mapping[str, Any], figures: Sequence[Plot], title: str) -> str:
    """The self-contained page: run facts, the printed figures, then each plot as an embedded PNG."""
    esc = html.escape
    run = data["run"]
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in run.items())
    lines = "".join(f"<li>{esc(line)}</li>" for line in data["lines"])
    sections = "".join(
        f'<section><h2>{esc(p.title)}</h2><figure><figcaption>{esc(p.caption)}</figcaption>'
        f'<img alt="{esc(p.title)}" src="data:image/png;base64,{base64.b64encode(p.png).decode("ascii")}">'
        f"</figure></section>" for p in figures)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"meta\">Judged by networks outside the run's losses: dlib's face "
            f"detector and 68-point predictor for the face and its mouth; dlib's face descriptor and FaceNet for "
            f"identity (FaceNet stays independent where dlib's descriptor serves as an identity loss).</p>"
            f"<table>{facts}</table><h2>Figures</h2><ul>{lines}</ul>{sections}"
            f"<footer>The numbers and per-frame series are in report.json beside this page.</footer>"
            f"</body></html>\n")


def write_report(out: Path, evaluation: Evaluation, driver_frames: Sequence[np.ndarray], outputs: np.ndarray,
                 terms: Mapping[str, np.ndarray], cfg: AnimateConfig, *, driving: Path,
                 fps: float) -> tuple[Path, Path]:
    """Write OUT/report.json and OUT/report.html (atomically); returns their paths."""
    data = report_data(evaluation, terms, cfg, driving=driving, fps=fps)
    page = render_html(data, report_plots(evaluation, terms, driver_frames, outputs, cfg.start),
                       f"stylepuppet evaluation — {Path(out).resolve().name}")
    json_path, html_path = Path(out) / REPORT_JSON, Path(out) / REPORT_HTML
    atomic.write_text(json_path, json.dumps(data, indent=1, allow_nan=False) + "\n")
    atomic.write_text(html_path, page)
    return json_path, html_path
