"""2DFAN4, the face-alignment heat-map network (Bulat & Tzimiropoulos 2017), without torchvision.

Module names and tensor shapes equal those of ``face_alignment.models.FAN`` so the official
``2DFAN4-11f355bf06.pth.tar`` state dict loads strictly. The net sees a 256² RGB crop in [0, 1]
framed the face-alignment way (:func:`stylepuppet.landmarks.framing.fan_framing`) and returns 68 heat
maps of 64² (one per iBUG point; the last of its stacked hourglasses is the prediction).

Coordinates: heat-map pixel ``k`` covers crop pixels ``4k … 4k+3``, so its centre is crop pixel
``4k + 1.5``; in general ``crop = (heat + 0.5)·4 − 0.5`` (pixel-index convention on both grids).
Two read-outs map the maps to points: :func:`soft_argmax` (differentiable, for losses) and
:func:`argmax_points` (face-alignment's maximum + quarter-pixel shift, for evaluation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet import safe_pickle, weights
from stylepuppet.errors import WeightsError
from stylepuppet.landmarks.framing import fan_framing, resize_points
from stylepuppet.landmarks.net import LandmarkNet, LandmarkOutput
from stylepuppet.landmarks.scheme import GROUPS, MIRROR

INPUT_SIZE = 256
HEATMAP_SIZE = 64
NUM_POINTS = 68
#: σ (heat-map pixels) of the Gaussians 2DFAN4 was trained to output: the Lua training code draws
#: ``image.gaussian(7)``, whose σ is 0.25·7 = 1.75, with peak 1.
TRAIN_SIGMA = 1.75
#: Soft-argmax temperature, relative to each map's peak height A. Near a Gaussian peak of σ,
#: softmax(h / (T·A)) is a Gaussian of σ·√T (0.68 px for T = 0.15, σ = 1.75): wide enough to
#: interpolate between pixels (bias < 0.02 px on rendered targets), narrow enough for the window.
SOFT_ARGMAX_TEMPERATURE = 0.15
#: Half-width of the soft-argmax window around the maximum (7×7 px, > 4 σ·√T at the defaults).
SOFT_ARGMAX_RADIUS = 3
#: Hex digest prefix in a file name (torch.hub's convention): ``2DFAN4-11f355bf06.pth.tar``.
_NAME_HASH = re.compile(r"-([0-9a-f]{8,64})\.")


class ConvBlock(nn.Module):
    """FAN's residual block: three 3×3 convs (out/2, out/4, out/4 channels, pre-activated BN-ReLU)
    whose outputs are concatenated to ``out`` channels, plus an (optionally projected) shortcut."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample: nn.Module | None = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(),
                                            nn.Conv2d(in_planes, out_planes, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], dim=1) + shortcut


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels: per level an upper branch ``b1_L`` at full size and a
    lower branch (avg-pool, ``b2_L``, the next level or ``b2_plus_1``, ``b3_L``, nearest 2× up)."""

    def __init__(self, depth: int, features: int) -> None:
        super().__init__()
        self.depth = depth
        self._build(depth, features)

    def _build(self, level: int, features: int) -> None:
        # Registration order follows face-alignment's recursion, so state-dict key order matches too.
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._build(level - 1, features)
        else:
            self.add_module("b2_plus_1", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: Tensor) -> Tensor:
        upper = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return upper + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, x)


class FAN(LandmarkNet):
    """Stacked-hourglass face alignment network; ``FAN(4)`` is 2DFAN4 (23.8 M parameters).

    ``width`` scales every channel count (official: 256, i.e. 64 → 128 → 256 in the stem); smaller
    widths exist only for fast tests and untrained stand-ins (they cannot load official weights).
    """

    input_size = INPUT_SIZE
    num_points = NUM_POINTS
    groups: ClassVar[dict[str, np.ndarray]] = {name: np.arange(r.start, r.stop) for name, r in GROUPS.items()}
    mirror: ClassVar[np.ndarray] = MIRROR
    ibug68: ClassVar[np.ndarray] = np.arange(NUM_POINTS)

    def __init__(self, num_modules: int = 4, width: int = 256) -> None:
        super().__init__()
        if num_modules < 1:
            raise ValueError(f"num_modules must be >= 1, got {num_modules}")
        if width % 16:
            raise ValueError(f"width must be a multiple of 16, got {width}")
        self.num_modules = num_modules
        self.width = width
        self.conv1 = nn.Conv2d(3, width // 4, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(width // 4)
        self.conv2 = ConvBlock(width // 4, width // 2)
        self.conv3 = ConvBlock(width // 2, width // 2)
        self.conv4 = ConvBlock(width // 2, width)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(4, width))
            self.add_module(f"top_m_{i}", ConvBlock(width, width))
            self.add_module(f"conv_last{i}", nn.Conv2d(width, width, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(width))
            self.add_module(f"l{i}", nn.Conv2d(width, NUM_POINTS, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, 1))
                self.add_module(f"al{i}", nn.Conv2d(NUM_POINTS, width, 1))

    def framing(self, box: Tensor) -> tuple[Tensor, Tensor]:
        """face-alignment's framing: box centre moved up 0.12·height, side 200·(w + h)/195."""
        return fan_framing(box)

    def heatmap_stack(self, crops: Tensor) -> list[Tensor]:
        """Heat maps [N, 68, 64, 64] of every stacked hourglass (the last one is the prediction)."""
        self.check_crops(crops)
        x = F.relu(self.bn1(self.conv1(crops)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        outputs = []
        for i in range(self.num_modules):
            y = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](x))
            y = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](y)))
            heat = self._modules[f"l{i}"](y)
            outputs.append(heat)
            if i < self.num_modules - 1:
                x = x + self._modules[f"bl{i}"](y) + self._modules[f"al{i}"](heat)
        return outputs

    def forward(self, crops: Tensor) -> LandmarkOutput:
        """Points (soft-argmax, crop pixels) and the last stack's heat maps of crops [N, 3, 256, 256] in [0, 1]."""
        heat = self.heatmap_stack(crops)[-1]
        return LandmarkOutput(heatmap_to_crop(soft_argmax(heat), heat.shape[-1], self.input_size), heat)


# ---------------------------------------------------------------------------------------------- read-outs


def heatmap_to_crop(points: Tensor, heatmap_size: int = HEATMAP_SIZE, crop_size: int = INPUT_SIZE) -> Tensor:
    """Heat-map pixel coordinates -> crop pixel coordinates (pixel centres at integers on both grids)."""
    return resize_points(points, heatmap_size, crop_size)


def crop_to_heatmap(points: Tensor, heatmap_size: int = HEATMAP_SIZE, crop_size: int = INPUT_SIZE) -> Tensor:
    """Inverse of :func:`heatmap_to_crop`."""
    return resize_points(points, crop_size, heatmap_size)


def soft_argmax(heatmaps: Tensor, temperature: float = SOFT_ARGMAX_TEMPERATURE,
                radius: int = SOFT_ARGMAX_RADIUS) -> Tensor:
    """Differentiable peak positions [N, P, 2] (x, y; heat-map pixels) of heat maps [N, P, h, w].

    The expectation of the pixel grid under ``softmax(h / (temperature · peak))`` over the
    (2·radius + 1)² window around each map's maximum (window moved inside the map at its border;
    ``peak`` is the maximum, floored at 1e-3 so flat or negative maps stay finite). The window
    keeps the rest of the map, its background and noise, out of the estimate; its position is the
    only non-differentiable part (it moves in whole pixels). See :data:`SOFT_ARGMAX_TEMPERATURE`.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heat maps must be [N, P, h, w], got {tuple(heatmaps.shape)}")
    n, p, h, w = heatmaps.shape
    r = min(radius, (h - 1) // 2, (w - 1) // 2)
    flat = heatmaps.flatten(2)
    idx = flat.detach().argmax(dim=-1)
    offsets = torch.arange(-r, r + 1, device=heatmaps.device)
    xs = (idx % w).clamp(r, w - 1 - r)[..., None] + offsets
    ys = (idx // w).clamp(r, h - 1 - r)[..., None] + offsets
    values = flat.gather(-1, (ys[..., :, None] * w + xs[..., None, :]).flatten(-2))
    peak = values.amax(dim=-1, keepdim=True).clamp_min(1e-3)
    prob = torch.softmax(values / (temperature * peak), dim=-1).view(n, p, 2 * r + 1, 2 * r + 1)
    x = (prob.sum(dim=-2) * xs.to(heatmaps.dtype)).sum(-1)
    y = (prob.sum(dim=-1) * ys.to(heatmaps.dtype)).sum(-1)
    return torch.stack([x, y], dim=-1)


@torch.no_grad()
def argmax_points(heatmaps: Tensor) -> Tensor:
    """face-alignment's evaluation read-out [N, P, 2] (heat-map pixels; not differentiable).

    The maximum's pixel, moved a quarter pixel along x and y towards the larger neighbour when it
    is not on the map's border. (face-alignment then maps to the image and truncates to integers;
    we keep the fraction.)
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heat maps must be [N, P, h, w], got {tuple(heatmaps.shape)}")
    h, w = heatmaps.shape[-2:]
    idx = heatmaps.flatten(2).argmax(dim=-1)
    x, y = idx % w, idx // w
    padded = F.pad(heatmaps, (1, 1, 1, 1))
    flat = padded.flatten(2)
    pw = w + 2

    def at(dx: int, dy: int) -> Tensor:
        return flat.gather(-1, ((y + 1 + dy) * pw + (x + 1 + dx))[..., None])[..., 0]

    inside = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    shift_x = torch.sign(at(1, 0) - at(-1, 0)) * 0.25 * inside
    shift_y = torch.sign(at(0, 1) - at(0, -1)) * 0.25 * inside
    return torch.stack([x.to(heatmaps.dtype) + shift_x, y.to(heatmaps.dtype) + shift_y], dim=-1)


def render_heatmaps(points: Tensor, size: int = HEATMAP_SIZE, sigma: float = TRAIN_SIGMA) -> Tensor:
    """Gaussian target maps [N, P, size, size] (peak 1) at points [N, P, 2] given in heat-map pixels.

    Untruncated and differentiable in the points; ``sigma`` defaults to the width FAN was trained on,
    so rendered targets look like FAN's own output.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be [N, P, 2], got {tuple(points.shape)}")
    grid = torch.arange(size, dtype=points.dtype, device=points.device)
    gx = torch.exp(-(grid - points[..., 0:1]) ** 2 / (2 * sigma**2))
    gy = torch.exp(-(grid - points[..., 1:2]) ** 2 / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]


# ---------------------------------------------------------------------------------------------- loading


def name_hash_prefix(path: Path) -> str | None:
    """The hex digest prefix a file name carries (``2DFAN4-11f355bf06.pth.tar`` -> ``11f355bf06``), if any."""
    match = _NAME_HASH.search(path.name)
    return match.group(1) if match else None


def check_name_hash(path: Path) -> None:
    """Raise WeightsError unless the file's sha256 starts with the hex its name carries (if it carries one)."""
    prefix = name_hash_prefix(path)
    if prefix is None:
        return
    digest = weights.sha256_file(path)
    if not digest.startswith(prefix):
        raise WeightsError(f"{path} is corrupt or not the file its name says: sha256 {digest[:12]}… "
                           f"does not start with {prefix}; delete it and download it again")


def fan_state_dict(obj: object, path: Path | str = "checkpoint") -> dict[str, Tensor]:
    """The FAN state dict inside a loaded checkpoint: a bare state dict or ``{"state_dict": ...}``,
    with any ``module.`` prefixes (nn.DataParallel) removed."""
    state = safe_pickle.state_dict(obj)
    if state is None or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a FAN checkpoint (expected a state dict of tensors)")
    return state


def infer_num_modules(state: Mapping[str, Tensor]) -> int:
    """Number of stacked hourglasses in a FAN state dict (4 for 2DFAN4)."""
    count = 0
    while f"l{count}.weight" in state:
        count += 1
    return count


def fan_from_state_dict(state: Mapping[str, Tensor], path: Path | str = "checkpoint") -> FAN:
    """Build the FAN a state dict describes and load it strictly (clear WeightsError on mismatch)."""
    num_modules = infer_num_modules(state)
    if num_modules == 0 or "conv1.weight" not in state:
        raise WeightsError(f"{path} is not a FAN checkpoint (no conv1 / l0 layers); pass the 2DFAN4 .pth.tar")
    width = int(state["conv4.conv1.weight"].shape[0] * 2) if "conv4.conv1.weight" in state else 256
    net = FAN(num_modules=num_modules, width=width)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"{path} does not match the FAN({num_modules}) layout: {first}") from None
    return net


def load_fan(source: str | Path, device: str | torch.device = "cpu") -> FAN:
    """Load a FAN from a file path or a weights-registry name (e.g. ``fan-2dfan4``), in eval mode.

    The file is read with ``torch.load(weights_only=True)`` (tensors and containers only, nothing
    executed); a name carrying a digest prefix (``2DFAN4-11f355bf06.pth.tar``) is checked against
    the file's sha256 first.
    """
    path = weights.resolve(source, kind="fan")
    check_name_hash(path)
    obj = safe_pickle.torch_load(path, what=f"FAN weights {path}")
    net = fan_from_state_dict(fan_state_dict(obj, path), path)
    return net.to(device).eval()


def untrained_fan(size: str = "tiny") -> FAN:
    """A randomly initialised FAN for offline runs: ``tiny`` (1 stack, width 64) or ``full`` (2DFAN4).

    The caller seeds the RNG; the result is in eval mode.
    """
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    net = FAN(num_modules=1, width=64) if size == "tiny" else FAN(num_modules=4)
    return net.eval()
