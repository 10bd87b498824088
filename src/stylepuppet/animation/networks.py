"""The networks an animation run needs, loaded from a config, with the ``--untrained`` substitution.

A network given by a file path, or a registry name whose file is cached (or downloadable), is
always loaded as it is. Only when a registry name cannot be resolved *and* ``untrained`` is set is a
randomly initialised network of the same kind substituted (seeded, so a resumed run rebuilds the
very same one), and its name recorded so the caller can warn loudly and stamp the output.
``untrained_size = "tiny"`` substitutes small architectures (fast enough for tests and CI);
``"full"`` the real ones.
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


def _resolve_or_untrained(source: str, kind: str, untrained: bool, names: list[str], what: str,
                          build: Callable[[], T], load: Callable[[Path], T]) -> T:
    try:
        path = weights.resolve(source, kind=kind)
    except WeightsError:
        if not untrained or weights.looks_like_path(source) or source not in weights.REGISTRY:
            raise
        names.append(f"{what} ({source})")
        return build()
    return load(path)


def load_latent_generator(cfg: AnimateConfig, untrained: list[str] | None = None) -> LatentGenerator:
    """The generator of ``cfg.network`` as the engine sees it, in ``cfg.space`` (the name of a substitute goes to
    ``untrained``)."""
    names = [] if untrained is None else untrained

    def build() -> LatentGenerator:
        entry = weights.REGISTRY.get(cfg.network)
        resolution = int(entry.resolution) if entry is not None and entry.resolution else 256
        with seeded(cfg.seed):
            G = untrained_stylegan2(cfg.untrained_size, resolution)
        return StyleGAN2Latents(G.to(cfg.device), cfg.space)

    return _resolve_or_untrained(cfg.network, "stylegan2", cfg.untrained, names, "generator", build,
                                 lambda p: loader.load_latent_generator(p, cfg.space, device=cfg.device,
                                                                        seed=cfg.seed))


def load_landmark_net(cfg: AnimateConfig, untrained: list[str] | None = None) -> tuple[LandmarkNet, Callable | None]:
    """The landmark net (FAN or mesh) and, for FAN, its heat-map renderer."""
    names = [] if untrained is None else untrained
    lm = cfg.landmarks
    if lm.net == "fan":
        untrained_net, renderer = fan.untrained_fan, fan.render_heatmaps
        load: Callable[[Path], LandmarkNet] = functools.partial(fan.load_fan, device=cfg.device)
    else:
        untrained_net, renderer, load = mesh.untrained_mesh, None, mesh.load_mesh

    def build() -> LandmarkNet:
        with seeded(cfg.seed + 1):
            return untrained_net(cfg.untrained_size)

    net = _resolve_or_untrained(lm.weights or weights.DEFAULTS[lm.net], lm.net, cfg.untrained, names, "landmark net",
                                build, load)
    return net.to(cfg.device).eval().requires_grad_(False), renderer


def load_look_metric(cfg: AnimateConfig, untrained: list[str] | None = None) -> LookMetric | None:
    """The look metric of keep-identity mode: LPIPS-VGG, or the weights-free MS-SSIM + L1 (a documented
    offline choice); None in free mode or when its λ is 0."""
    names = [] if untrained is None else untrained
    if cfg.mode == "free" or cfg.loss.look == 0:
        return None
    if cfg.look_loss == "msssim":
        return MSSSIMLook(ms_ssim)
    source = cfg.look_weights or weights.DEFAULTS["lpips"]

    def build() -> Any:
        with seeded(cfg.seed + 2):
            return lpips.untrained_lpips(cfg.untrained_size)

    metric = _resolve_or_untrained(source, "lpips", cfg.untrained, names, "LPIPS", build, lpips.load_lpips)
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
    """All networks of a run; warns (UntrainedWarning) when any was substituted."""
    untrained: list[str] = []
    generator = load_latent_generator(cfg, untrained)
    net, renderer = load_landmark_net(cfg, untrained)
    look = load_look_metric(cfg, untrained)
    identity = load_identity_net(cfg, untrained)
    if untrained:
        warn_untrained(untrained)
    return Networks(generator, net, look, untrained, renderer, identity)
