"""``stylepuppet.load_generator``: a generator from a registry name, a URL or a file, verified and safe."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stylepuppet import weights

if TYPE_CHECKING:
    import torch

    from stylepuppet.generators.stylegan2 import Generator


def load_generator(source: str | os.PathLike[str], device: str | torch.device = "cpu",
                   which: str = "G_ema") -> Generator:
    """Load a StyleGAN2 generator in eval mode.

    ``source`` is a registry name (downloaded and verified on first use), an http(s) URL (cached),
    or a file: an NVIDIA network pickle (read without executing anything from it), a rosinality
    checkpoint, or our safetensors format. ``which`` picks ``G_ema`` (for inference) or ``G`` from a pickle.
    """
    path = weights.resolve(source, kind="stylegan2")
    from stylepuppet.generators.checkpoints import load_generator_file

    return load_generator_file(path, which=which, device=device)
