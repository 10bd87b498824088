"""LPIPS-VGG (Zhang et al. 2018, v0.1 "lin" heads) without torchvision.

distance(x, y) = Σ_k mean_hw( Σ_c w_kc · (x̂_khwc − ŷ_khwc)² ), where x̂_k are the VGG16 relu1_2,
relu2_2, relu3_3, relu4_3 and relu5_3 activations, unit-normalised over channels
(``f / (‖f‖ + 1e-10)``), of the image after LPIPS's scaling layer ``(x − shift) / scale``.

Because the heads are non-negative, the distance is the squared Euclidean distance between the
*folded* features ``x̂_k · √w_k / √(h_k·w_k)`` of the two images (:meth:`LPIPS.features`), so a
target's features can be computed once. This is also what NVIDIA's ``vgg16.pt`` returns for
``return_lpips=True`` (its projector sums the squared difference of two such outputs).

Inputs are RGB in [-1, 1] (LPIPS's convention). Resize policy: images whose larger side exceeds
``max_size`` (256, the size LPIPS was calibrated at) are area-downsampled to it, as NVIDIA's
projector does; smaller images are used as they are (the network is fully convolutional).

Two weight sources:

(a) NVIDIA's TorchScript ``vgg16.pt``, read as data by
    :mod:`stylepuppet.perceptual.torchscript_reader` (nothing in it is run). Its tensors are named
    ``layers.conv1 … conv13`` (VGG16's convolutions in order), ``layers.fc1 … fc3`` (unused here)
    and ``lpips0 … lpips4`` (the LPIPS heads).
(b) torchvision's VGG16 state dict (``vgg16-397923af.pth``, keys ``features.N.*``) plus the LPIPS
    heads file ``weights/v0.1/vgg.pth`` (keys ``lin{k}.model.1.weight``), or the lpips package's
    whole-model state dict (``net.slice{j}.N.*`` + ``lin{k}.*``); all read with
    ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet import safe_pickle, weights
from stylepuppet.errors import WeightsError
from stylepuppet.perceptual.torchscript_reader import is_torchscript_archive, read_torchscript

#: VGG16's block widths (64, 128, 256, 512, 512); smaller ones build tiny test networks.
VGG16_CHANNELS = (64, 128, 256, 512, 512)
#: Number of 3×3 convolutions in each VGG16 block.
BLOCK_CONVS = (2, 2, 3, 3, 3)
#: LPIPS's scaling layer, for inputs in [-1, 1]: (x − shift) / scale is ImageNet's mean/std normalisation.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: LPIPS's normalize_tensor epsilon.
EPS = 1e-10
#: Images larger than this are area-downsampled before LPIPS (NVIDIA's projector's policy).
MAX_SIZE = 256


def vgg16_layer_indices(blocks: tuple[int, ...] = BLOCK_CONVS) -> tuple[list[int], list[int]]:
    """torchvision ``vgg16.features`` indices of the convolutions and of the ReLUs LPIPS taps
    (the last ReLU of each block): ([0, 2, 5, 7, 10, …, 28], [3, 8, 15, 22, 29])."""
    convs, taps, index = [], [], 0
    for n in blocks:
        for _ in range(n):
            convs.append(index)
            index += 2
        taps.append(index - 1)
        index += 1  # the max-pool closing the block
    return convs, taps


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk up to relu5_3 with torchvision's layout (``features.N``), so a
    torchvision VGG16 state dict's ``features.*`` entries load as they are."""

    def __init__(self, channels: tuple[int, ...] = VGG16_CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for block, (c_out, n) in enumerate(zip(channels, BLOCK_CONVS)):
            if block > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(n):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.taps = vgg16_layer_indices()[1]

    def forward(self, x: Tensor) -> list[Tensor]:
        """The five tapped activations (relu1_2 … relu5_3) of normalised images x."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def normalize_channels(f: Tensor, eps: float = EPS) -> Tensor:
    """LPIPS's normalize_tensor: each pixel's feature vector divided by (its L2 norm + eps).

    The norm is ``torch.linalg.vector_norm``, whose gradient at an all-zero vector is 0 rather than
    the NaN of ``sqrt(sum(f²))``; the value is the same.
    """
    return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + eps)


def downsample_policy(images: Tensor, max_size: int = MAX_SIZE) -> Tensor:
    """Area-downsample images [N, C, H, W] whose larger side exceeds ``max_size`` to it (aspect kept)."""
    h, w = images.shape[-2:]
    if max(h, w) <= max_size:
        return images
    s = max_size / max(h, w)
    return F.interpolate(images, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")


class LPIPS(nn.Module):
    """LPIPS-VGG distance of images in [-1, 1]; ``features`` gives the folded per-image features."""

    def __init__(self, channels: tuple[int, ...] = VGG16_CHANNELS, max_size: int = MAX_SIZE) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels must give the 5 VGG16 block widths, got {channels}")
        self.channels = tuple(int(c) for c in channels)
        self.max_size = max_size
        self.vgg = VGG16Features(self.channels)
        self.heads = nn.ParameterList([nn.Parameter(torch.full((c,), 1.0 / c)) for c in self.channels])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def _check(self, images: Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"LPIPS expects images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")

    def layer_features(self, images: Tensor) -> list[Tensor]:
        """Unit-normalised VGG activations [N, C_k, h_k, w_k] of images in [-1, 1] (after the resize policy)."""
        self._check(images)
        x = (downsample_policy(images, self.max_size) - self.shift) / self.scale
        return [normalize_channels(f) for f in self.vgg(x)]

    def features(self, images: Tensor) -> Tensor:
        """Folded features [N, D]: ‖features(x) − features(y)‖² is the LPIPS distance of x and y."""
        out = []
        for f, w in zip(self.layer_features(images), self.heads):
            h, wd = f.shape[-2:]
            out.append((f * (w.clamp_min(0).sqrt() / (h * wd) ** 0.5)[None, :, None, None]).flatten(1))
        return torch.cat(out, dim=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance [N] of images x and y [N, 3, H, W] in [-1, 1] (LPIPS's own formula)."""
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        total = None
        for fx, fy, w in zip(self.layer_features(x), self.layer_features(y), self.heads):
            term = torch.einsum("nchw,c->nhw", (fx - fy).square(), w).mean(dim=(1, 2))
            total = term if total is None else total + term
        assert total is not None
        return total


def feature_distance(features_x: list[Tensor] | tuple[Tensor, ...] | Tensor,
                     features_y: list[Tensor] | tuple[Tensor, ...] | Tensor) -> Tensor:
    """The LPIPS distance [N] from folded features: the sum of their squared differences.

    Accepts one flat feature tensor per image (:meth:`LPIPS.features`, or NVIDIA's vgg16.pt
    ``return_lpips=True`` form) or a list of per-layer tensors.
    """
    xs = [features_x] if isinstance(features_x, Tensor) else list(features_x)
    ys = [features_y] if isinstance(features_y, Tensor) else list(features_y)
    if not (len(xs) == len(ys) and len(xs) > 0):
        raise ValueError("feature lists must be non-empty and of equal length")
    total: Tensor | None = None
    for fx, fy in zip(xs, ys):
        if fx.shape[1:] != fy.shape[1:]:
            raise ValueError(f"feature shapes differ: {tuple(fx.shape)} vs {tuple(fy.shape)}")
        term = (fx - fy).square().flatten(1).sum(dim=1)
        total = term if total is None else total + term
    assert total is not None
    return total


# ---------------------------------------------------------------------------------------------- loading


def _channels_from_convs(convs: list[Tensor]) -> tuple[int, ...]:
    ends = [sum(BLOCK_CONVS[: b + 1]) - 1 for b in range(5)]
    return tuple(int(convs[i].shape[0]) for i in ends)


def lpips_from_tensors(convs: list[tuple[Tensor, Tensor]], heads: list[Tensor], source: str) -> LPIPS:
    """Build an LPIPS from VGG16's 13 (weight, bias) pairs in order and the 5 head weight vectors."""
    if len(convs) != sum(BLOCK_CONVS) or len(heads) != 5:
        raise WeightsError(f"{source}: expected 13 VGG16 convolutions and 5 LPIPS heads, found {len(convs)} and "
                           f"{len(heads)}")
    metric = LPIPS(_channels_from_convs([w for w, _ in convs]))
    conv_modules = [metric.vgg.features[i] for i in vgg16_layer_indices()[0]]
    with torch.no_grad():
        for k, ((weight, bias), module) in enumerate(zip(convs, conv_modules)):
            if weight.shape != module.weight.shape or bias.shape != module.bias.shape:
                raise WeightsError(f"{source}: convolution {k + 1} has shape {tuple(weight.shape)}, expected "
                                   f"{tuple(module.weight.shape)}; not a VGG16")
            module.weight.copy_(weight)
            module.bias.copy_(bias)
        for k, (w, param) in enumerate(zip(heads, metric.heads)):
            if w.numel() != param.numel():
                raise WeightsError(f"{source}: LPIPS head {k} has {w.numel()} weights, expected {param.numel()}")
            if bool((w < 0).any()):
                raise WeightsError(f"{source}: LPIPS head {k} has negative weights; not LPIPS v0.1 'lin' heads")
            param.copy_(w.reshape(-1))
    return metric.eval()


def lpips_from_nvidia(path: str | Path) -> LPIPS:
    """LPIPS from NVIDIA's TorchScript ``vgg16.pt``, read without running it."""
    tensors = read_torchscript(path).tensors()
    convs, heads = [], []
    for i in range(1, sum(BLOCK_CONVS) + 1):
        w, b = tensors.get(f"layers.conv{i}.weight"), tensors.get(f"layers.conv{i}.bias")
        if w is None or b is None:
            break
        convs.append((w, b))
    heads = [tensors[f"lpips{k}"] for k in range(5) if f"lpips{k}" in tensors]
    if len(convs) != sum(BLOCK_CONVS) or len(heads) != 5:
        found = ", ".join(sorted(tensors)[:12])
        raise WeightsError(f"{path} is a TorchScript file but not NVIDIA's LPIPS vgg16.pt layout (expected "
                           f"layers.conv1..13 and lpips0..4; found {found}…)")
    return lpips_from_tensors(convs, heads, str(path))


def _state_dict(path: Path) -> dict[str, Tensor]:
    state = safe_pickle.state_dict(safe_pickle.torch_load(path, what=str(path)))
    if state is None:
        raise WeightsError(f"{path} does not hold a state dict")
    return state


def _vgg_convs(state: Mapping[str, Tensor], source: str) -> list[tuple[Tensor, Tensor]] | None:
    """VGG16 conv (weight, bias) pairs from torchvision keys ``features.N`` or lpips's ``net.slice{j}.N``."""
    flat = {}
    for key, value in state.items():
        if key.startswith("features."):
            flat[key[len("features."):]] = value
        elif key.startswith("net.slice"):
            flat[key.split(".", 2)[2]] = value
    if not flat:
        return None
    pairs = []
    for i in vgg16_layer_indices()[0]:
        if f"{i}.weight" not in flat or f"{i}.bias" not in flat:
            raise WeightsError(f"{source} lacks VGG16 layer features.{i}; it is not a VGG16 state dict")
        pairs.append((flat[f"{i}.weight"], flat[f"{i}.bias"]))
    return pairs


def _heads(state: Mapping[str, Tensor]) -> list[Tensor] | None:
    keys = [f"lin{k}.model.1.weight" for k in range(5)]
    return [state[k] for k in keys] if all(k in state for k in keys) else None


def load_lpips(source: str | Path, heads: str | Path | None = None) -> LPIPS:
    """Load LPIPS-VGG from NVIDIA's ``vgg16.pt`` (path or registry name), or from a torchvision VGG16
    state dict plus the LPIPS heads file ``heads`` (or one lpips-package state dict holding both)."""
    path = weights.resolve(source, kind="lpips")
    if is_torchscript_archive(path):
        if heads is not None:
            raise WeightsError(f"{path} is NVIDIA's vgg16.pt, which holds its own LPIPS heads; do not pass heads")
        return lpips_from_nvidia(path)
    state = _state_dict(path)
    convs = _vgg_convs(state, str(path))
    if convs is None:
        if _heads(state) is not None:
            raise WeightsError(f"{path} holds only the LPIPS heads; pass the VGG16 weights as the source and this "
                               "file as heads")
        raise WeightsError(f"{path} is neither NVIDIA's vgg16.pt nor a VGG16 / LPIPS state dict")
    head_weights = _heads(state)
    head_source = path
    if heads is not None:
        head_source = weights.resolve(heads, kind="lpips")
        head_weights = _heads(_state_dict(head_source))
    if head_weights is None:
        raise WeightsError(f"no LPIPS heads (lin0..lin4) in {head_source}; pass the lpips v0.1 vgg.pth as heads")
    return lpips_from_tensors(convs, head_weights, str(path))


def untrained_lpips(size: str = "tiny") -> LPIPS:
    """A randomly initialised LPIPS for offline runs (measures nothing meaningful): ``tiny`` (block
    widths 8…32) or ``full``. Heads are random positive weights. The caller seeds the RNG."""
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    metric = LPIPS((8, 16, 32, 32, 32) if size == "tiny" else VGG16_CHANNELS)
    with torch.no_grad():
        for w in metric.heads:
            w.copy_(torch.rand_like(w) / w.numel())
    return metric.eval()
