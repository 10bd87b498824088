import math

import pytest
import torch
import torch.nn.functional as F

from stylepuppet.perceptual.msssim import WEIGHTS, ms_ssim, num_scales

D = torch.float64


def reference_ms_ssim(x, y, weights):
    """MS-SSIM written out directly: a full 2-D 11x11 Gaussian window (σ 1.5), valid filtering, 2x2 mean
    pooling (even sizes), cs at the fine scales, l·cs at the coarsest, weighted product per channel."""
    r = torch.arange(11, dtype=D) - 5
    g1 = torch.tensor([math.exp(-v * v / (2 * 1.5**2)) for v in r.tolist()], dtype=D)
    win = torch.outer(g1, g1) / torch.outer(g1, g1).sum()
    c1, c2 = 0.01**2, 0.03**2
    out = torch.ones(x.shape[0], x.shape[1], dtype=D)
    for j, w in enumerate(weights):
        def filt(img):
            n, c, h, wd = img.shape
            return F.conv2d(img.reshape(n * c, 1, h, wd), win[None, None]).reshape(n, c, h - 10, wd - 10)

        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        cs = ((2 * cxy + c2) / (vx + vy + c2)).mean(dim=(2, 3))
        if j == len(weights) - 1:
            lum = ((2 * mx * my + c1) / (mx**2 + my**2 + c1))
            cs = (lum * (2 * cxy + c2) / (vx + vy + c2)).mean(dim=(2, 3))
        out = out * cs**w
        if j < len(weights) - 1:
            n, c, h, wd = x.shape
            x = x.reshape(n, c, h // 2, 2, wd // 2, 2).mean(dim=(3, 5))
            y = y.reshape(n, c, h // 2, 2, wd // 2, 2).mean(dim=(3, 5))
    return out.mean(dim=1)


def _pair(size, seed=0, noise=0.15):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g, dtype=D)
    x = F.avg_pool2d(x, 3, stride=1, padding=1)  # some spatial structure
    y = (0.8 * x + noise * torch.rand(x.shape, generator=g, dtype=D)).clamp(0, 1)
    return x, y


def test_identical_images_score_one():
    x, _ = _pair(64)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(2, dtype=D))


def test_five_scales_use_the_published_weights():
    x, y = _pair(176)
    assert num_scales(176, 176) == 5
    torch.testing.assert_close(ms_ssim(x, y), reference_ms_ssim(x, y, WEIGHTS))


def test_small_images_use_fewer_scales_with_renormalised_weights():
    x, y = _pair(48, seed=1)
    assert num_scales(48, 48) == 3  # 48, 24, 12 >= 11 > 6
    w = [v / sum(WEIGHTS[:3]) for v in WEIGHTS[:3]]
    value = ms_ssim(x, y)
    torch.testing.assert_close(value, reference_ms_ssim(x, y, w))
    assert torch.all((value > 0) & (value < 1))


def test_scale_count_and_too_small_images():
    assert [num_scales(n, n) for n in (11, 21, 22, 64, 160, 161, 1024)] == [1, 2, 2, 3, 4, 5, 5]
    assert num_scales(300, 40) == 2
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))
    with pytest.raises(ValueError, match="equal shape"):
        ms_ssim(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 16))


def test_more_difference_scores_lower():
    x, y = _pair(64, noise=0.1)
    _, z = _pair(64, noise=0.5)
    assert torch.all(ms_ssim(x, z) < ms_ssim(x, y))


def test_gradcheck_and_gradients_flow():
    x, y = _pair(22, seed=2)
    x = x[:1, :1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ms_ssim(a, y[:1, :1]), (x,))
    x32 = _pair(32)[0].float().requires_grad_(True)
    (1 - ms_ssim(x32, torch.rand_like(x32))).sum().backward()
    assert torch.isfinite(x32.grad).all() and x32.grad.abs().sum() > 0
