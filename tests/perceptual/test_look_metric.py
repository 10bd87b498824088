"""The look term's metrics: their parts, the weights-free mix, and LPIPS with the look's features computed once."""

import torch

from stylepuppet.perceptual.look import LPIPSLook, MSSSIMLook, l1_distance, msssim_l1_distance
from stylepuppet.perceptual.lpips import feature_distance, untrained_lpips

D = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_look_parts_zero_on_identical_and_gradients():
    x = rand(2, 3, 8, 8, seed=1)
    assert torch.all(l1_distance(x, x.clone()) == 0)
    assert torch.all(msssim_l1_distance(torch.ones(2, dtype=D), torch.zeros(2, dtype=D)) == 0)
    feats = [rand(2, 4, 3, 3, seed=2), rand(2, 8, 2, 2, seed=3)]
    assert torch.all(feature_distance(feats, [f.clone() for f in feats]) == 0)
    other = [rand(1, 4, 3, 3, seed=4), rand(1, 8, 2, 2, seed=5)]
    expected = sum((a - b).square().flatten(1).sum(1) for a, b in zip(feats, other))
    torch.testing.assert_close(feature_distance(feats, other), expected)
    y = rand(2, 3, 8, 8, seed=6)
    assert torch.autograd.gradcheck(l1_distance, (x.requires_grad_(), y.requires_grad_()))
    assert torch.autograd.gradcheck(lambda a, b: feature_distance([a], [b]),
                                    (feats[0].requires_grad_(), other[0].requires_grad_()))


def test_msssim_look_uses_the_documented_mix():
    look = MSSSIMLook(lambda x, y: torch.full((x.shape[0],), 0.5, dtype=x.dtype))
    target = torch.zeros(1, 3, 8, 8)
    images = torch.full((2, 3, 8, 8), 0.5)  # [0, 1] difference of 0.25 everywhere
    torch.testing.assert_close(look(look.prepare(target), images), torch.full((2,), 0.84 * 0.5 + 0.16 * 0.25))


def test_lpips_look_precomputes_the_target_features():
    torch.manual_seed(0)
    metric = untrained_lpips("tiny")
    look = LPIPSLook(metric)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    prepared = look.prepare(target)
    torch.testing.assert_close(look(prepared, images), metric(images, target.expand(2, -1, -1, -1)))
    assert torch.all(look(prepared, target) < 1e-6)
