"""The networks an animation run needs, loaded from a config, with the ``--untrained`` substitution.

Every weights file a run needs is found first (:func:`resolve_weights`), so one error names all the
missing ones. A network given by a file path, or a registry name whose file is cached (or
downloadable), is always loaded as it is. Only when a registry name cannot be resolved *and*
``untrained`` is set is a randomly initialised network of the same kind substituted (seeded, so a
resumed run rebuilds the very same one), and its name recorded so the caller can warn loudly and
stamp the output. ``untrained_size = "tiny"`` substitutes small architectures (fast enough for tests
and CI); ``"full"`` the real ones.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from stylepuppet import weights
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import UntrainedWarning, WeightsError
from stylepuppet.generators import loader
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.generators.stylegan2 import untrained_stylegan2
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.identity.dlib_resnet import untrained_dlib_resnet
from stylepuppet.identity.net import IdentityNet
from stylepuppet.landmarks import fan, mesh
from stylepuppet.landmarks.net import LandmarkNet
from stylepuppet.perceptual import lpips
from stylepuppet.perceptual.look import LookMetric, LPIPSLook, MSSSIMLook
from stylepuppet.perceptual.msssim import ms_ssim

T = TypeVar("T")


@dataclass
class Networks:
    """What a run optimises against: the generator, the landmark net, the look metric (None in free mode), the
    face-recognition network of the identity term (None when its λ is 0)."""

    generator: LatentGenerator
    landmark_net: LandmarkNet
    look: LookMetric | None
    untrained: list[str] = field(default_factory=list)
    heatmap_renderer: Callable | None = None
    identity: IdentityNet | None = None


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a random initialisation under a fixed seed without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def warn_untrained(names: list[str]) -> None:
    """The loud warning of a run or a render with substituted networks (``names``: what stands in for what)."""
    warnings.warn(f"UNTRAINED networks stand in for missing weights: {', '.join(names)}; the output is stamped "
                  "UNTRAINED and shows no real face", UntrainedWarning, stacklevel=3)


def weights_needed(cfg: AnimateConfig) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    """The weights files a run of ``cfg`` loads: what each is for -> (source, registry kind or kinds)."""
    needed: dict[str, tuple[str, str | tuple[str, ...]]] = {
        "generator": (cfg.network, weights.GENERATOR_KINDS),
        "landmark net": (cfg.landmarks.weights or weights.DEFAULTS[cfg.landmarks.net], cfg.landmarks.net)}
    if cfg.mode == "keep-identity" and cfg.loss.look > 0 and cfg.look_loss == "lpips":
        needed["LPIPS"] = (cfg.look_weights or weights.DEFAULTS["lpips"], "lpips")
    return needed


def resolve_weights(cfg: AnimateConfig, only: tuple[str, ...] | None = None) -> dict[str, Path | None]:
    """A verified local file for every weights file the run needs (of ``only``, default all), downloading what
    can be; None where ``--untrained`` substitutes a missing registry network. One WeightsError names every
    file that is missing, so an offline user learns of all of them at once."""
    paths: dict[str, Path | None] = {}
    missing: list[str] = []
    for what, (source, kind) in weights_needed(cfg).items():
        if only is not None and what not in only:
            continue
        try:
            paths[what] = weights.resolve(source, kind=kind)
        except WeightsError as exc:
            if cfg.untrained and not weights.looks_like_path(source) and source in weights.REGISTRY:
                paths[what] = None
            else:
                missing.append(f"{what}: {exc}")
    if len(missing) == 1:
        raise WeightsError(missing[0])
    if missing:
        raise WeightsError(f"{len(missing)} weights files are missing — " + " | ".join(missing))
    return paths


def _load_or_untrained(what: str, cfg: AnimateConfig, path: Path | None, names: list[str],
                       build: Callable[[], T], load: Callable[[Path], T]) -> T:
    if path is not None:
        return load(path)
    names.append(f"{what} ({weights_needed(cfg)[what][0]})")
    return build()


def load_latent_generator(cfg: AnimateConfig, untrained: list[str] | None = None,
                          paths: dict[str, Path | None] | None = None) -> LatentGenerator:
    """The generator of ``cfg.network`` as the engine sees it, in ``cfg.space`` (the name of a substitute goes to
    ``untrained``; ``paths``: the files :func:`resolve_weights` found, else they are resolved here)."""
    names = [] if untrained is None else untrained
    paths = resolve_weights(cfg, ("generator",)) if paths is None else paths

    def build() -> LatentGenerator:
        entry = weights.REGISTRY.get(cfg.network)
        resolution = int(entry.resolution) if entry is not None and entry.resolution else 256
        with seeded(cfg.seed):
            G = untrained_stylegan2(cfg.untrained_size, resolution)
        return StyleGAN2Latents(G.to(cfg.device), cfg.space)

    return _load_or_untrained("generator", cfg, paths["generator"], names, build,
                              lambda p: loader.load_latent_generator(p, cfg.space, device=cfg.device, seed=cfg.seed))


def load_landmark_net(cfg: AnimateConfig, untrained: list[str] | None = None,
                      paths: dict[str, Path | None] | None = None) -> tuple[LandmarkNet, Callable | None]:
    """The landmark net (FAN or mesh) and, for FAN, its heat-map renderer."""
    names = [] if untrained is None else untrained
    paths = resolve_weights(cfg, ("landmark net",)) if paths is None else paths
    lm = cfg.landmarks
    if lm.net == "fan":
        untrained_net, renderer = fan.untrained_fan, fan.render_heatmaps
        load: Callable[[Path], LandmarkNet] = functools.partial(fan.load_fan, device=cfg.device)
    else:
        untrained_net, renderer, load = mesh.untrained_mesh, None, mesh.load_mesh

    def build() -> LandmarkNet:
        with seeded(cfg.seed + 1):
            return untrained_net(cfg.untrained_size)

    net = _load_or_untrained("landmark net", cfg, paths["landmark net"], names, build, load)
    return net.to(cfg.device).eval().requires_grad_(False), renderer


def load_look_metric(cfg: AnimateConfig, untrained: list[str] | None = None,
                     paths: dict[str, Path | None] | None = None) -> LookMetric | None:
    """The look metric of keep-identity mode: LPIPS-VGG, or the weights-free MS-SSIM + L1 (a documented
    offline choice); None in free mode or when its λ is 0."""
    names = [] if untrained is None else untrained
    if cfg.mode == "free" or cfg.loss.look == 0:
        return None
    if cfg.look_loss == "msssim":
        return MSSSIMLook(ms_ssim)
    paths = resolve_weights(cfg, ("LPIPS",)) if paths is None else paths

    def build() -> Any:
        with seeded(cfg.seed + 2):
            return lpips.untrained_lpips(cfg.untrained_size)

    metric = _load_or_untrained("LPIPS", cfg, paths["LPIPS"], names, build, lpips.load_lpips)
    return LPIPSLook(metric.to(cfg.device).eval().requires_grad_(False))


def load_identity_net(cfg: AnimateConfig, untrained: list[str] | None = None) -> IdentityNet | None:
    """The identity term's face-recognition network (dlib's ResNet: the copy face-recognition-models installs for
    the registry name, else a file or a download); None when its λ is 0."""
    names = [] if untrained is None else untrained
    if cfg.loss.identity == 0:
        return None
    source = cfg.identity_net
    try:
        net = IdentityNet.load(source)
    except WeightsError:
        if not cfg.untrained or weights.looks_like_path(source) or source not in weights.REGISTRY:
            raise
        names.append(f"identity net ({source})")
        with seeded(cfg.seed + 3):
            net = IdentityNet(untrained_dlib_resnet(cfg.untrained_size))
    return net.to(cfg.device).eval()


def load_networks(cfg: AnimateConfig) -> Networks:
    """All networks of a run (every weights file found first, see :func:`resolve_weights`); warns
    (UntrainedWarning) when any was substituted."""
    untrained: list[str] = []
    paths = resolve_weights(cfg)
    generator = load_latent_generator(cfg, untrained, paths)
    net, renderer = load_landmark_net(cfg, untrained, paths)
    look = load_look_metric(cfg, untrained, paths)
    identity = load_identity_net(cfg, untrained)
    if untrained:
        warn_untrained(untrained)
    return Networks(generator, net, look, untrained, renderer, identity)
