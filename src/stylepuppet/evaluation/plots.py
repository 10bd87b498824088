"""The evaluation report's figures: matplotlib on the Agg canvas, each returned as PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` directly (never pyplot), so nothing here
touches a global backend or needs a display, and the same code runs in a server thread.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stylepuppet.evaluation.figures import Identity

#: Colours kept apart across every figure: the driver is always blue, the output always orange.
DRIVER, OUTPUT, WALK, LIMIT, LOOK = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728", "#2ca02c"
WIDTH, HEIGHT, DPI = 8.0, 3.2, 100


def _figure(height: float = HEIGHT, width: float = WIDTH) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as a PNG file's bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _frames_axis(ax: Axes, count: int, start: int) -> None:
    ax.set_xlabel(f"frame of the run (driving frame {start} + frame)")
    ax.set_xlim(-0.5, max(count - 0.5, 0.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _markers(count: int) -> str | None:
    """Dots on short series, where lines alone hide single frames (and NaN gaps)."""
    return "o" if count <= 40 else None


def mouth_plot(driver: np.ndarray, output: np.ndarray, correlation: float, start: int = 0) -> Figure:
    """Driver's and output's mouth-opening ratio [T] over the run on one axis."""
    fig = _figure()
    ax = fig.add_subplot()
    t = np.arange(len(driver))
    ax.plot(t, driver, color=DRIVER, marker=_markers(len(t)), label="driver")
    ax.plot(t, output, color=OUTPUT, marker=_markers(len(t)), label="output")
    ax.set_ylabel("inner-lip gap / mouth width")
    ax.set_title(f"Mouth opening (dlib) — correlation {correlation:.3f}")
    _frames_axis(ax, len(t), start)
    ax.legend(loc="best")
    return fig


def loss_plot(terms: Mapping[str, np.ndarray], start: int = 0) -> Figure:
    """Each frame's final (unweighted) loss terms; a log axis, as the terms differ by orders of magnitude."""
    fig = _figure()
    ax = fig.add_subplot()
    shown = {name: np.asarray(v, dtype=np.float64) for name, v in terms.items()
             if np.isfinite(np.asarray(v, dtype=np.float64)).any()}
    count = max((len(v) for v in shown.values()), default=0)
    for name, values in shown.items():
        positive = np.where(values > 0, values, np.nan)
        ax.plot(np.arange(len(values)), positive, marker=_markers(len(values)), label=name,
                linewidth=2.2 if name == "total" else 1.2)
    if shown:
        ax.set_yscale("log")
        fig.legend(loc="outside lower center", ncols=len(shown))  # below the axes: the curves fill them
    else:
        ax.text(0.5, 0.5, "no loss terms recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("loss (unweighted)")
    ax.set_title("Loss terms per frame (after the frame's last step)")
    _frames_axis(ax, count, start)
    return fig


def identity_plot(judged: Sequence[Identity], start: int = 0) -> Figure:
    """Each judge's identity distance of every output frame to the first output frame (and to the look), in a
    panel of its own with its own same-person line: the judges' distances are on different scales. The
    driver's own drift, where judged, is drawn beside it for scale. One legend below the panels: inside them
    it hid the curves."""
    fig = _figure(width=WIDTH, height=HEIGHT + 0.7)
    for column, identity in enumerate(judged):
        ax = fig.add_subplot(1, len(judged), column + 1)
        t = np.arange(len(identity.to_first))
        ax.plot(t, identity.to_first, color=OUTPUT, marker=_markers(len(t)), label="to the first output frame")
        series = [identity.to_first]
        if identity.driver_to_first is not None:
            ax.plot(t, identity.driver_to_first, color=DRIVER, marker=_markers(len(t)),
                    label="the driver, to its first frame")
            series.append(identity.driver_to_first)
        if identity.to_look is not None:
            ax.plot(t, identity.to_look, color=LOOK, marker=_markers(len(t)), label="to the look image")
            series.append(identity.to_look)
        ax.axhline(identity.threshold, color=LIMIT, linestyle="--", label="same person below the dashed line")
        finite = np.concatenate([s[np.isfinite(s)] for s in series])
        top = float(finite.max()) * 1.1 if finite.size else 0.0
        ax.set_ylim(0, max(identity.threshold * 1.25, top))
        ax.set_ylabel("distance")
        ax.set_title(f"{identity.judge}: same person below {identity.threshold}", fontsize=10)
        _frames_axis(ax, len(t), start)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    fig.suptitle("Identity: distance between faces, as each judge sees them")
    return fig


def jitter_plot(output: np.ndarray, driver: np.ndarray, start: int = 0) -> Figure:
    """Per-frame landmark jitter [T] of output and driver, with each one's mean as a dashed line."""
    fig = _figure()
    ax = fig.add_subplot()
    t = np.arange(len(output))
    for series, colour, name in ((driver, DRIVER, "driver"), (output, OUTPUT, "output")):
        mean = float(np.nanmean(series)) if np.isfinite(series).any() else float("nan")
        ax.plot(t, series, color=colour, marker=_markers(len(t)), label=f"{name} (mean {mean:.4f})")
        if np.isfinite(mean):
            ax.axhline(mean, color=colour, linestyle="--", linewidth=1)
    ax.set_ylabel("inter-ocular distances")
    ax.set_title("Landmark jitter (wobble off the neighbours' midpoint)")
    _frames_axis(ax, len(t), start)
    ax.legend(loc="best")
    return fig


def walks_plot(walks: np.ndarray, correlation: float) -> Figure:
    """The random walks' correlations as a distribution (histogram and one tick per walk), the run's value marked."""
    fig = _figure()
    ax = fig.add_subplot()
    finite = walks[np.isfinite(walks)]
    ax.hist(finite, bins=np.linspace(-1, 1, 21), color=WALK, alpha=0.6, label=f"random walks ({len(walks)})")
    ax.plot(finite, np.zeros_like(finite), "|", color="black", markersize=14)
    if finite.size:
        p95 = float(np.percentile(finite, 95))
        ax.axvline(p95, color=WALK, linestyle="--", label=f"walks' 95th percentile {p95:.3f}")
    if np.isfinite(correlation):
        ax.axvline(correlation, color=OUTPUT, linewidth=3, label=f"this run {correlation:.3f}")
    ax.set_xlim(-1, 1)
    ax.set_xlabel("mouth-opening correlation with the driver")
    ax.set_ylabel("walks")
    ax.set_title("Chance baseline: latent walks with the run's step sizes")
    fig.legend(loc="outside lower center", ncols=3)  # below the axes: the walks may fall anywhere in [-1, 1]
    ax.grid(alpha=0.3)
    return fig


def strip_plot(driver_frames: Sequence[np.ndarray], outputs: np.ndarray, window: tuple[float, float, float],
               picks: Sequence[tuple[str, int]], driver_ratio: np.ndarray, output_ratio: np.ndarray) -> Figure:
    """One row per (label, frame) of ``picks``: the driver's face ``window`` (x0, y0, side) | the output frame."""
    fig = _figure(height=3.0 * len(picks), width=6.4)
    x0, y0, side = window
    for row, (label, t) in enumerate(picks):
        left = fig.add_subplot(len(picks), 2, 2 * row + 1)
        left.imshow(driver_frames[t])
        left.set_xlim(x0, x0 + side)
        left.set_ylim(y0 + side, y0)
        left.set_title(f"{label}: driver, frame {t} (ratio {driver_ratio[t]:.3f})", fontsize=9)
        right = fig.add_subplot(len(picks), 2, 2 * row + 2)
        right.imshow(outputs[t], interpolation="bicubic")
        right.set_title(f"output, frame {t} (ratio {output_ratio[t]:.3f})", fontsize=9)
        for ax in (left, right):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Driver | output where the driver's mouth is widest and narrowest")
    return fig
