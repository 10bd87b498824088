"""Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), pure torch and differentiable.

The weights-free look loss for offline use. Standard definition: per scale a Gaussian window of
11 taps with σ = 1.5 (separable, "valid" filtering, no padding), constants C1 = (0.01·L)² and
C2 = (0.03·L)² for data range L; contrast-structure terms cs_j at every scale, the full SSIM
(luminance · cs) at the coarsest one; 2× average pooling between scales (a trailing odd row or
column is averaged over the pixels it has, as TensorFlow's "SAME" pooling);
MS-SSIM = Π_{j<M} cs_j^{w_j} · ssim_M^{w_M} with w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
computed per channel and averaged over channels.

Small images: five scales need a side of more than 160 px (≥ 11 after four halvings). With fewer
pixels only the M finest scales whose side is still ≥ 11 are used (M ≥ 1; 3 at 64², 5 from 161²) and
their weights are rescaled to sum to 1 (the five standard weights are used as published; they sum to
1.0001). cs and SSIM are clamped at 1e-8 before the fractional powers (they are ≤ 0 only for
anti-correlated images), which keeps the gradient finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
_FLOOR = 1e-8


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """Normalised 1-D Gaussian taps [size] centred on the middle tap."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, taps: Tensor) -> Tensor:
    """Separable valid Gaussian filtering of every channel of x [N, C, H, W]."""
    c = x.shape[1]
    k = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_terms(x: Tensor, y: Tensor, taps: Tensor, data_range: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per-channel mean SSIM and mean contrast-structure term [N, C] of one scale."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mx, my = _blur(x, taps), _blur(y, taps)
    sxx = _blur(x * x, taps) - mx * mx
    syy = _blur(y * y, taps) - my * my
    sxy = _blur(x * y, taps) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def num_scales(height: int, width: int, window: int = WINDOW, max_scales: int = len(WEIGHTS)) -> int:
    """How many scales fit: the finest M (≤ 5) whose smallest side is still ≥ the window."""
    side, m = min(height, width), 0
    while m < max_scales and side >= window:
        m += 1
        side = (side + 1) // 2
    if m == 0:
        raise ValueError(f"MS-SSIM needs images of at least {window}x{window} pixels, got {height}x{width}")
    return m


def ms_ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """MS-SSIM [N] of images x, y [N, C, H, W] with values in [0, data_range]; 1 for identical images."""
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"MS-SSIM needs two images of equal shape [N, C, H, W], got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    m = num_scales(x.shape[-2], x.shape[-1])
    weights = torch.tensor(WEIGHTS[:m], dtype=x.dtype, device=x.device)
    if m < len(WEIGHTS):
        weights = weights / weights.sum()
    taps = gaussian_window(dtype=x.dtype, device=x.device)
    factors = []
    for j in range(m):
        ssim, cs = ssim_terms(x, y, taps, data_range)
        factors.append((ssim if j == m - 1 else cs).clamp_min(_FLOOR))
        if j < m - 1:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
    stacked = torch.stack(factors, dim=-1)  # [N, C, M]
    return (stacked ** weights).prod(dim=-1).mean(dim=1)
