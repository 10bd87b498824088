"""The networks an animation run needs, loaded from a config, with the ``--untrained`` substitution.

A network given by a file path, or a registry name whose file is cached (or downloadable), is
always loaded as it is. Only when a registry name cannot be resolved *and* ``untrained`` is set is a
randomly initialised network of the same kind substituted (seeded, so a resumed run rebuilds the
very same one), and its name recorded so the caller can warn loudly and stamp the output.
``untrained_size = "tiny"`` substitutes small architectures (fast enough for tests and CI);
``"full"`` the real ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from stylepuppet.config import AnimateConfig
from stylepuppet.errors import WeightsError
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.optim.objective import LookMetric, LPIPSLook, MSSSIMLook

T = TypeVar("T")

#: Registry names used when the config does not name a file.
DEFAULT_WEIGHTS = {"fan": "fan-2dfan4", "mesh": "mediapipe-face-landmark", "lpips": "lpips-vgg16"}


class UntrainedWarning(UserWarning):
    """Randomly initialised networks stand in for missing weights: the output shows no real face."""


@dataclass
class Networks:
    """What a run optimises against: the generator, the landmark net, the look metric (None in free mode)."""

    generator: LatentGenerator
    landmark_net: Any
    look: LookMetric | None
    untrained: list[str] = field(default_factory=list)
    heatmap_renderer: Callable | None = None


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a random initialisation under a fixed seed without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _resolve_or_untrained(source: str, kind: str, untrained: bool, names: list[str], what: str,
                          build: Callable[[], T], load: Callable[[Path], T]) -> T:
    from stylepuppet import weights

    try:
        path = weights.resolve(source, kind=kind)
    except WeightsError:
        if not untrained or weights.looks_like_path(source) or source not in weights.REGISTRY:
            raise
        names.append(f"{what} ({source})")
        return build()
    return load(path)


# ---------------------------------------------------------------------------------------------- generator


def untrained_stylegan2(size: str, seed: int, resolution: int = 256) -> Any:
    """A randomly initialised StyleGAN2 generator: ``tiny`` (64², w_dim 32, 2 mapping layers) or the
    paper256 / config-F widths at ``resolution``. Noise strengths are set to 0.1 (NVIDIA initialises
    them to 0, which would make the noise inputs, and their handling, invisible)."""
    from stylepuppet.generators.stylegan2 import Generator

    with seeded(seed):
        if size == "tiny":
            G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, mapping_kwargs={"num_layers": 2},
                          synthesis_kwargs={"channel_base": 1024, "channel_max": 32})
        else:
            base = 16384 if resolution <= 256 else 32768
            G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution,
                          mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": base, "channel_max": 512})
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G


def _registry_resolution(name: str) -> int:
    from stylepuppet import weights

    entry = weights.REGISTRY.get(name)
    return int(entry.resolution) if entry is not None and entry.resolution else 256


def load_latent_generator(cfg: AnimateConfig, untrained: list[str] | None = None) -> LatentGenerator:
    """The generator of ``cfg.network`` behind the engine interface (StyleGAN2 in cfg.space, or a DCGAN)."""
    from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents

    names = [] if untrained is None else untrained

    def load(path: Path) -> LatentGenerator:
        from stylepuppet.generators import dcgan

        state = _maybe_dcgan_state(path)
        if state is not None:
            gen = dcgan.dcgan_from_state_dict(state, seed=cfg.seed)
            gen.G.to(cfg.device)
            return gen
        from stylepuppet.generators.checkpoints import load_generator_file

        return StyleGAN2Latents(load_generator_file(path, device=cfg.device), cfg.space)

    def build() -> LatentGenerator:
        G = untrained_stylegan2(cfg.untrained_size, cfg.seed, _registry_resolution(cfg.network))
        return StyleGAN2Latents(G.to(cfg.device), cfg.space)

    gen = _resolve_or_untrained(cfg.network, "stylegan2", cfg.untrained, names, "generator", build, load)
    if cfg.space == "w+" and not gen.supports_wplus:
        raise WeightsError(f"{cfg.network} is a single-latent generator without W+; use --space w")
    return gen


def _maybe_dcgan_state(path: Path) -> dict | None:
    """The state dict if ``path`` is a tensor-only torch file in the DCGAN-tutorial layout, else None."""
    from stylepuppet.generators import dcgan

    if path.suffix not in (".pt", ".pth"):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain tensor file: the StyleGAN2 loader reports its own error
        return None
    return state if dcgan.is_dcgan_state_dict(state) else None


# ---------------------------------------------------------------------------------------------- loss nets


def load_landmark_net(cfg: AnimateConfig, untrained: list[str] | None = None) -> tuple[Any, Callable | None]:
    """The landmark net (FAN or mesh) and, for FAN, its heat-map renderer."""
    names = [] if untrained is None else untrained
    lm = cfg.landmarks
    source = lm.weights or DEFAULT_WEIGHTS[lm.net]
    if lm.net == "fan":
        from stylepuppet.landmarks import fan

        def build() -> Any:
            with seeded(cfg.seed + 1):
                return fan.untrained_fan(cfg.untrained_size)

        net = _resolve_or_untrained(source, "fan", cfg.untrained, names, "landmark net",
                                    build, lambda p: fan.load_fan(p, device=cfg.device))
        return net.to(cfg.device).eval().requires_grad_(False), fan.render_heatmaps
    from stylepuppet.landmarks import mesh

    def build_mesh() -> Any:
        with seeded(cfg.seed + 1):
            return mesh.untrained_mesh(cfg.untrained_size)

    net = _resolve_or_untrained(source, "mesh", cfg.untrained, names, "landmark net", build_mesh,
                                lambda p: mesh.load_mesh(p))
    return net.to(cfg.device).eval().requires_grad_(False), None


def load_look_metric(cfg: AnimateConfig, untrained: list[str] | None = None) -> LookMetric | None:
    """The look metric of keep-identity mode: LPIPS-VGG, or the weights-free MS-SSIM + L1 (a documented
    offline choice); None in free mode or when its λ is 0."""
    names = [] if untrained is None else untrained
    if cfg.mode == "free" or cfg.loss.look == 0:
        return None
    if cfg.look_loss == "msssim":
        from stylepuppet.perceptual.msssim import ms_ssim

        return MSSSIMLook(ms_ssim)
    from stylepuppet.perceptual import lpips

    source = cfg.look_weights or DEFAULT_WEIGHTS["lpips"]

    def build() -> Any:
        with seeded(cfg.seed + 2):
            return lpips.untrained_lpips(cfg.untrained_size)

    metric = _resolve_or_untrained(source, "lpips", cfg.untrained, names, "LPIPS", build,
                                   lambda p: lpips.load_lpips(p))
    return LPIPSLook(metric.to(cfg.device).eval().requires_grad_(False))


def load_networks(cfg: AnimateConfig) -> Networks:
    """All networks of a run; warns (UntrainedWarning) when any was substituted."""
    untrained: list[str] = []
    generator = load_latent_generator(cfg, untrained)
    net, renderer = load_landmark_net(cfg, untrained)
    look = load_look_metric(cfg, untrained)
    if untrained:
        warnings.warn(f"UNTRAINED networks stand in for missing weights: {', '.join(untrained)}; the output is "
                      "stamped UNTRAINED and shows no real face", UntrainedWarning, stacklevel=2)
    return Networks(generator, net, look, untrained, renderer)
