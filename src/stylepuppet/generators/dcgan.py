"""Plain z -> image generators in the PyTorch DCGAN-tutorial layout, behind the engine's interface.

The tutorial generator is one ``nn.Sequential`` named ``main``: a stride-1 transposed convolution
from the 1x1 latent to 4x4, then stride-2 transposed convolutions that double the size, each but
the last followed by BatchNorm and ReLU, and a Tanh at the end. A bare state dict holds no config,
so the layout (z size, widths, depth, hence resolution) is read from the keys and tensor shapes.

The latent is a Gaussian z. Its mass lies on a thin shell of radius sqrt(dim) (the "typical
set"); images decoded from far inside or outside it are not faces the network has learned. The
adapter therefore keeps every latent on that sphere (see :meth:`DCGANLatents.constrain`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stylepuppet import safe_pickle
from stylepuppet.errors import ConfigError, WeightsError

#: Where other checkpoints nest the generator's state dict (the gan-face-generate package's file).
_NESTED_KEYS = ("netG_state_dict", "state_dict")
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
_KEY = re.compile(r"main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")


@dataclass(frozen=True)
class DCGANLayout:
    """What a DCGAN-tutorial state dict says about its network."""

    z_dim: int
    widths: tuple[int, ...]  # output channels of every transposed convolution, the last is the image's
    conv_bias: bool
    kernel: int = 4

    @property
    def img_resolution(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    @property
    def img_channels(self) -> int:
        return self.widths[-1]


def _unwrap(state: Mapping[str, object]) -> dict[str, Tensor]:
    """The generator's tensors from a bare, nested or DataParallel ("module."-prefixed) state dict."""
    return {k: v for k, v in (safe_pickle.state_dict(state, _NESTED_KEYS) or {}).items() if isinstance(v, Tensor)}


def detect_layout(state: Mapping[str, object]) -> DCGANLayout | None:
    """The layout of a DCGAN-tutorial generator state dict, or None if the keys/shapes do not fit it.

    Expected: transposed convolutions at ``main.0, main.3, ...`` (weights [in, out, k, k]), each
    but the last followed by BatchNorm at the next index, nothing else; widths chain up.
    """
    tensors = _unwrap(state)
    if not tensors or not all(_KEY.fullmatch(k) for k in tensors):
        return None
    convs = sorted(int(k.split(".")[1]) for k, v in tensors.items() if k.endswith(".weight") and v.ndim == 4)
    if len(convs) < 2 or convs != list(range(0, 3 * len(convs), 3)):
        return None
    first = tensors["main.0.weight"]
    kernel = first.shape[-1]
    if kernel != 4 or first.shape[-2] != 4:
        return None
    widths: list[int] = []
    in_ch = first.shape[0]
    conv_bias = "main.0.bias" in tensors
    expected = set()
    for n, idx in enumerate(convs):
        w = tensors[f"main.{idx}.weight"]
        if w.ndim != 4 or w.shape[0] != in_ch or tuple(w.shape[2:]) != (kernel, kernel):
            return None
        out_ch = w.shape[1]
        expected.add(f"main.{idx}.weight")
        if conv_bias:
            expected.add(f"main.{idx}.bias")
        if n < len(convs) - 1:
            for suffix in _BN_SUFFIXES:
                key = f"main.{idx + 1}.{suffix}"
                if key not in tensors or tuple(tensors[key].shape) != (out_ch,):
                    return None
                expected.add(key)
            if f"main.{idx + 1}.num_batches_tracked" in tensors:
                expected.add(f"main.{idx + 1}.num_batches_tracked")
        widths.append(out_ch)
        in_ch = out_ch
    if set(tensors) != expected:
        return None
    return DCGANLayout(z_dim=int(first.shape[0]), widths=tuple(widths), conv_bias=conv_bias, kernel=kernel)


class DCGANGenerator(nn.Module):
    """The DCGAN-tutorial generator (``main`` Sequential, module indices as in the tutorial)."""

    c_dim = 0  # no class labels

    def __init__(self, layout: DCGANLayout) -> None:
        super().__init__()
        self.layout = layout
        layers: list[nn.Module] = []
        in_ch = layout.z_dim
        for n, out_ch in enumerate(layout.widths):
            first = n == 0
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, layout.kernel, stride=1 if first else 2,
                                             padding=0 if first else 1, bias=layout.conv_bias))
            if n < len(layout.widths) - 1:
                layers += [nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    @property
    def z_dim(self) -> int:
        return self.layout.z_dim

    @property
    def img_resolution(self) -> int:
        return self.layout.img_resolution

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: str = "const") -> Tensor:
        """Images [N, C, R, R] in [-1, 1] from z [N, z_dim], called as a StyleGAN2 generator is (it has no class
        labels and no noise; the Gaussian prior's mean, z = 0, is no face to truncate towards)."""
        if truncation_psi != 1:
            raise ConfigError("a DCGAN generator has no truncation (its prior's mean is no face); use psi 1")
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


def sphere_project(z: Tensor) -> Tensor:
    """Scale each latent (last axis) to norm sqrt(dim), the radius where a Gaussian's mass lies."""
    radius = math.sqrt(z.shape[-1])
    return z * (radius / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))


class DCGANLatents:
    """:class:`~stylepuppet.generators.interface.LatentGenerator` for a z -> image DCGAN.

    One latent per image (``num_ws = 1``, no W+), no noise buffers. Choices, and why:

    * **Latents live on the sphere ‖z‖ = sqrt(dim).** :meth:`constrain` projects back onto it after
      every optimiser step. A norm penalty is not enough: Adam rescales each coordinate separately,
      so z drifts off the shell anyway and the faces degrade (measured while building this).
    * **No mean image.** The mean of a Gaussian prior (z = 0) is not a face. :meth:`mean_latent`
      returns one fixed typical latent (seeded) so runs are reproducible; a better start for the first
      frame is the best of many random latents, which the engine picks from
      :meth:`candidate_latents` by its own loss.
    """

    supports_wplus = False
    num_ws = 1

    def __init__(self, generator: DCGANGenerator, seed: int = 0) -> None:
        self.G = generator.eval().requires_grad_(False)
        self.latent_dim = generator.layout.z_dim
        self.img_resolution = generator.layout.img_resolution
        self.seed = seed

    def candidate_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random latents on the sphere, [n, 1, latent_dim]: starts to choose the first frame's from."""
        z = torch.randn(n, 1, self.latent_dim, generator=generator)
        return sphere_project(z)

    def mean_latent(self) -> Tensor:
        """A fixed typical latent [latent_dim] (seeded sample on the sphere), since z = 0 is not a face."""
        return self.candidate_latents(1, torch.Generator().manual_seed(self.seed))[0, 0]

    def latent_std(self) -> float:
        return 1.0

    def render(self, latents: Tensor, noise_mode: str = "const") -> Tensor:
        """Images [N, 3, R, R] in [-1, 1]; ``noise_mode`` is accepted for the interface (no noise here)."""
        if latents.ndim != 3 or latents.shape[1:] != (1, self.latent_dim):
            raise ValueError(f"latents must be [N, 1, {self.latent_dim}], got {tuple(latents.shape)}")
        return self.G(latents[:, 0])

    def noise_buffers(self) -> dict[str, Tensor]:
        return {}

    def constrain(self, latents: Tensor) -> Tensor:
        """Project each latent back onto ‖z‖ = sqrt(dim) (see the class docstring for why)."""
        return sphere_project(latents)


def is_dcgan_state_dict(state: object) -> bool:
    """Whether a loaded object is a state dict (bare, nested or DataParallel) in the DCGAN-tutorial layout."""
    return isinstance(state, Mapping) and detect_layout(state) is not None


def dcgan_generator(state: Mapping[str, object]) -> DCGANGenerator:
    """The generator a DCGAN-tutorial state dict describes, loaded strictly; WeightsError if it matches no layout."""
    layout = detect_layout(state)
    if layout is None:
        keys = ", ".join(list(_unwrap(state))[:4]) or "no tensors"
        raise WeightsError(f"state dict matches no known generator layout (keys: {keys}, ...); expected a "
                           "DCGAN-tutorial generator with keys main.0.weight, main.1.running_mean, ...")
    G = DCGANGenerator(layout)
    tensors = _unwrap(state)
    for key, value in G.state_dict().items():  # old BatchNorm files lack this counter; it is unused in eval
        if key.endswith("num_batches_tracked"):
            tensors.setdefault(key, value)
    G.load_state_dict(tensors, strict=True)
    return G.eval()
