"""The one way a generator is loaded: :data:`FORMATS`, an ordered list of (sniff, load) pairs.

``animate``, ``render``, ``evaluate``, ``generate``, ``weights convert`` and
:func:`stylepuppet.load_generator` all come here, so every command reads every format. A file is
recognised by its content (first bytes, or the keys of a torch file), never by its name; the first
format whose ``sniff`` accepts it loads it. Adding a generator type means adding one entry: how to
recognise its files, how to build the network (an :class:`ImageGenerator`), and how the engine
sees it (a :class:`LatentGenerator`).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylepuppet import safe_pickle, weights
from stylepuppet.devices import torch_device
from stylepuppet.errors import WeightsError
from stylepuppet.generators import checkpoints, dcgan
from stylepuppet.generators.dcgan import DCGANLatents
from stylepuppet.generators.interface import ImageGenerator, LatentGenerator
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents

_ZIP_MAGIC = b"PK\x03\x04"
#: A legacy (non-zip) ``torch.save`` file starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


class WeightsFile:
    """A file being identified: its first bytes, and (read once, on demand) its content as a torch file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if not path.exists():
            raise WeightsError(f"{path} does not exist; check the path or fetch the weights first")
        if not path.is_file():
            raise WeightsError(f"{path} is not a file; give the path of a weights file")
        self.path = path
        self.size = path.stat().st_size
        if self.size == 0:
            raise WeightsError(f"{path} is empty (0 bytes); download or copy it again")
        with open(path, "rb") as f:
            self.head = f.read(16)

    @property
    def is_torch(self) -> bool:
        """A ``torch.save`` file (zip or legacy)."""
        return self.head.startswith((_ZIP_MAGIC, _LEGACY_TORCH_MAGIC))

    @property
    def is_pickle(self) -> bool:
        """A plain pickle of protocol 2 to 5 (and not a torch file, whose legacy form also starts like one)."""
        return not self.is_torch and len(self.head) >= 2 and self.head[0] == 0x80 and 2 <= self.head[1] <= 5

    @functools.cached_property
    def torch_content(self) -> Any:
        """The torch file's content, read with torch's allow-list (a rosinality checkpoint may also hold the
        training script's command-line arguments, an ``argparse.Namespace``)."""
        return safe_pickle.torch_load(self.path, what=str(self.path), classes=(argparse.Namespace,))


@dataclass(frozen=True)
class GeneratorFormat:
    """One generator file format: how to recognise it, build its network, and give the engine its latents."""

    name: str
    sniff: Callable[[WeightsFile], bool]
    load: Callable[[WeightsFile, str], nn.Module]  # (file, which) -> network on the CPU
    latents: Callable[[Any, str, int], LatentGenerator]  # (network, space, seed) -> the engine's view


def _stylegan_latents(G: Any, space: str, seed: int) -> LatentGenerator:
    """StyleGAN2 and StyleGAN3 networks alike (same call shapes; StyleGAN3 has no noise buffers)."""
    return StyleGAN2Latents(G, space)


#: Every generator format, in the order they are tried.
FORMATS: tuple[GeneratorFormat, ...] = (
    GeneratorFormat("NVIDIA network pickle", lambda f: f.is_pickle,  # StyleGAN2 or StyleGAN3
                    lambda f, which: checkpoints.read_nvidia(f.path, which), _stylegan_latents),
    GeneratorFormat("stylepuppet safetensors", lambda f: checkpoints.is_ours(f.head, f.size),
                    lambda f, which: checkpoints.read_ours(f.path), _stylegan_latents),
    GeneratorFormat("DCGAN-tutorial state dict", lambda f: f.is_torch and dcgan.is_dcgan_state_dict(f.torch_content),
                    lambda f, which: dcgan.dcgan_generator(f.torch_content),
                    lambda G, space, seed: DCGANLatents(G, seed=seed)),
    GeneratorFormat("rosinality StyleGAN2 checkpoint",
                    lambda f: f.is_torch and checkpoints.is_rosinality(f.torch_content),
                    lambda f, which: checkpoints.read_rosinality(f.torch_content, f.path, which), _stylegan_latents),
)


def identify(path: str | os.PathLike[str]) -> tuple[GeneratorFormat, WeightsFile]:
    """The format of a generator file (WeightsError naming the accepted formats if none fits)."""
    file = WeightsFile(path)
    for fmt in FORMATS:
        if fmt.sniff(file):
            return fmt, file
    accepted = ", ".join(f.name for f in FORMATS)
    if file.is_torch:
        content = file.torch_content
        held = ", ".join(map(str, list(content)[:8])) if isinstance(content, dict) else type(content).__name__
        raise WeightsError(f"{file.path} is a torch file but holds no generator stylepuppet reads (it holds: "
                           f"{held or 'nothing'}); give one of: {accepted}")
    raise WeightsError(f"{file.path} is not a generator weights file (it starts with {file.head[:8]!r}); give one "
                       f"of: {accepted}")


def load_generator_file(path: str | os.PathLike[str], *, which: str = "G_ema",
                        device: str | torch.device = "cpu") -> ImageGenerator:
    """The generator network in a file, in eval mode without gradients (``which``: ``G_ema`` or ``G`` of a
    file that holds both)."""
    device = torch_device(device)
    fmt, file = identify(path)
    return fmt.load(file, which).to(device).eval().requires_grad_(False)


def load_generator(source: str | os.PathLike[str], device: str | torch.device = "cpu",
                   which: str = "G_ema") -> ImageGenerator:
    """The generator network of a registry name (downloaded and verified on first use), an http(s) URL
    (cached) or a file; see :func:`load_generator_file`."""
    torch_device(device)
    return load_generator_file(weights.resolve(source, kind=weights.GENERATOR_KINDS), which=which, device=device)


def load_latent_generator(path: str | os.PathLike[str], space: str, *, device: str | torch.device = "cpu",
                          seed: int = 0) -> LatentGenerator:
    """The engine's view of the generator in a file: latents in ``space`` ("w" or "w+"); ``seed`` fixes the
    start latent of generators without a mean one (DCGAN)."""
    device = torch_device(device)
    fmt, file = identify(path)
    network = fmt.load(file, "G_ema").to(device).eval().requires_grad_(False)
    generator = fmt.latents(network, space, seed)
    if space == "w+" and not generator.supports_wplus:
        raise WeightsError(f"{path} is a single-latent generator without W+; use --space w")
    return generator


def convert_generator(src: str | os.PathLike[str], dst: str | os.PathLike[str], which: str = "G_ema") -> Path:
    """Read a generator file and write it in stylepuppet's format (``stylepuppet weights convert IN OUT``)."""
    return checkpoints.save_generator(load_generator_file(src, which=which), dst, source=Path(src).name, which=which)
