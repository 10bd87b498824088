import numpy as np
import pytest
import torch
from engine_stubs import TinyLandmarkNet

from stylepuppet.optim import losses
from stylepuppet.config import LandmarkConfig
from stylepuppet.errors import ConfigError
from stylepuppet.landmarks.framing import jitter_framing
from stylepuppet.optim.objective import LandmarkObjective, MSSSIMLook, crop_to_heatmap

D = torch.float64


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


# ------------------------------------------------------------------------------------------ heat maps


def test_heatmap_loss_is_the_originals_weighted_l2_norm():
    pred, target, w = rand(2, 5, 4, 4, seed=1), rand(2, 5, 4, 4, seed=2), rand(5, seed=3).abs()
    expected = torch.stack([((pred[i] - target[i]) * w[:, None, None]).square().sum().sqrt() for i in range(2)])
    torch.testing.assert_close(losses.heatmap_loss(pred, target, w), expected)
    assert torch.all(losses.heatmap_loss(pred, pred.clone(), w) == 0)


def test_heatmap_loss_gradient():
    pred, target, w = rand(2, 3, 4, 4, seed=1), rand(2, 3, 4, 4, seed=2), rand(3, seed=3).abs()
    assert torch.autograd.gradcheck(losses.heatmap_loss, (pred.requires_grad_(), target.requires_grad_(), w))


@pytest.mark.parametrize("pred, target, w, words", [
    ((2, 3, 4), (2, 3, 4), (3,), "must be [N, P, h, w]"),
    ((2, 3, 4, 4), (2, 3, 4, 5), (3,), "heat map shapes differ"),
    ((2, 3, 4, 4), (2, 3, 4, 4), (4,), "point_weights must be [3]"),
])
def test_heatmap_loss_shape_errors(pred, target, w, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        losses.heatmap_loss(torch.zeros(pred), torch.zeros(target), torch.ones(w))


# ------------------------------------------------------------------------------------------ coordinates


def test_coord_loss_is_weighted_mean_distance_over_face_size():
    pred = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]], dtype=D)
    target = torch.tensor([[[3.0, 4.0], [10.0, 0.0]]], dtype=D)
    w = torch.tensor([1.0, 3.0], dtype=D)
    # distances 5 and 0, weights 1 and 3 -> 5 / 4, over face size 50
    torch.testing.assert_close(losses.coord_loss(pred, target, w, torch.tensor([50.0], dtype=D)),
                               torch.tensor([5 / 4 / 50], dtype=D))
    assert losses.coord_loss(target, target.clone(), w, torch.tensor([50.0], dtype=D)).item() == 0


def test_coord_loss_gradient_and_zero_gradient_at_the_optimum():
    pred, target, w = rand(2, 6, 2, seed=1), rand(2, 6, 2, seed=2), rand(6, seed=3).abs()
    size = torch.tensor([3.0, 5.0], dtype=D)
    assert torch.autograd.gradcheck(losses.coord_loss, (pred.requires_grad_(), target, w, size.requires_grad_()))
    at = target.clone().requires_grad_()
    losses.coord_loss(at, target, w, size).sum().backward()
    assert torch.all(at.grad == 0)


@pytest.mark.parametrize("pred, target, w, size, words", [
    ((2, 3), (2, 3), (2,), (2,), "must be [N, P, 2]"),
    ((2, 3, 2), (2, 4, 2), (3,), (2,), "point shapes differ"),
    ((2, 3, 2), (2, 3, 2), (2,), (2,), "point_weights must be [3]"),
    ((2, 3, 2), (2, 3, 2), (3,), (1,), "face_size must be [2]"),
])
def test_coord_loss_shape_errors(pred, target, w, size, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        losses.coord_loss(torch.zeros(pred), torch.zeros(target), torch.ones(w), torch.ones(size))


# ------------------------------------------------------------------------------------------ latents


@pytest.mark.parametrize("fn", [losses.smoothness, losses.fidelity])
def test_latent_terms_are_l2_norms_over_all_layers(fn):
    w, other = rand(3, 4, 5, seed=1), rand(3, 4, 5, seed=2)
    torch.testing.assert_close(fn(w, other), (w - other).flatten(1).norm(dim=1))
    assert torch.all(fn(w, w.clone()) == 0)
    mean = rand(1, 1, 5, seed=3)  # w_avg broadcasts over the batch and the layers
    torch.testing.assert_close(fn(w, mean), (w - mean).flatten(1).norm(dim=1))
    assert torch.autograd.gradcheck(fn, (w.requires_grad_(), other.requires_grad_()))


def test_latent_terms_shape_errors():
    with pytest.raises(ValueError, match=r"latents must be \[N, num_ws, dim\]"):
        losses.smoothness(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="reference latent"):
        losses.fidelity(torch.zeros(3, 4, 5), torch.zeros(1, 1, 6))


# ------------------------------------------------------------------------------------------ noise


def reference_noise_reg(bufs):
    """NVIDIA's projector regulariser written out with explicit index shifts."""
    total = 0.0
    for b in bufs:
        n = b.clone()
        while True:
            total += (n * torch.cat([n[:, -1:], n[:, :-1]], 1)).mean() ** 2
            total += (n * torch.cat([n[-1:], n[:-1]], 0)).mean() ** 2
            if n.shape[0] <= 8:
                break
            n = n.reshape(n.shape[0] // 2, 2, n.shape[1] // 2, 2).mean(dim=(1, 3))
    return total


def test_noise_regularisation_matches_nvidias_formula_and_gradient():
    bufs = [rand(4, 4, seed=1), rand(16, 16, seed=2), rand(32, 32, seed=3)]
    torch.testing.assert_close(losses.noise_regularisation(bufs), reference_noise_reg(bufs))
    smooth = torch.ones(16, 16, dtype=D)  # fully correlated noise is penalised, white noise hardly
    assert losses.noise_regularisation([smooth]) > 100 * losses.noise_regularisation([bufs[1]])
    assert torch.autograd.gradcheck(lambda *b: losses.noise_regularisation(b),
                                    tuple(b.requires_grad_() for b in bufs[:2]))


def test_noise_regularisation_shape_errors():
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        losses.noise_regularisation([torch.zeros(1, 8, 8)])
    with pytest.raises(ValueError, match="at least one"):
        losses.noise_regularisation([])


# ------------------------------------------------------------------------------------------ look


def test_look_parts_zero_on_identical_and_gradients():
    x = rand(2, 3, 8, 8, seed=1)
    assert torch.all(losses.l1_distance(x, x.clone()) == 0)
    assert torch.all(losses.msssim_l1_distance(torch.ones(2, dtype=D), torch.zeros(2, dtype=D)) == 0)
    feats = [rand(2, 4, 3, 3, seed=2), rand(2, 8, 2, 2, seed=3)]
    assert torch.all(losses.lpips_distance(feats, [f.clone() for f in feats]) == 0)
    other = [rand(1, 4, 3, 3, seed=4), rand(1, 8, 2, 2, seed=5)]
    expected = sum((a - b).square().flatten(1).sum(1) for a, b in zip(feats, other))
    torch.testing.assert_close(losses.lpips_distance(feats, other), expected)
    y = rand(2, 3, 8, 8, seed=6)
    assert torch.autograd.gradcheck(losses.l1_distance, (x.requires_grad_(), y.requires_grad_()))
    assert torch.autograd.gradcheck(lambda a, b: losses.lpips_distance([a], [b]),
                                    (feats[0].requires_grad_(), other[0].requires_grad_()))


def test_msssim_look_uses_the_documented_mix():
    look = MSSSIMLook(lambda x, y: torch.full((x.shape[0],), 0.5, dtype=x.dtype))
    target = torch.zeros(1, 3, 8, 8)
    images = torch.full((2, 3, 8, 8), 0.5)  # [0, 1] difference of 0.25 everywhere
    torch.testing.assert_close(look(look.prepare(target), images), torch.full((2,), 0.84 * 0.5 + 0.16 * 0.25))


# ------------------------------------------------------------------------------------------ landmark objective


def objective(**kw):
    cfg = LandmarkConfig(**{"form": "relative", "compare": "coords", "jitter_count": 0, **kw})
    return LandmarkObjective(TinyLandmarkNet(), cfg)


BOX = torch.tensor([[6.0, 6.0, 26.0, 26.0]])


@pytest.mark.parametrize("form, jitter", [("heatmap", 0), ("heatmap", 3), ("relative", 0)])
def test_landmark_objective_is_zero_when_the_image_is_its_own_target(form, jitter):
    obj = objective(form=form, jitter_count=jitter)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    centre, side = obj.framing(BOX)
    unit = (image + 1) / 2
    if form == "heatmap":
        targets = obj.targets_from_image(unit, centre, side)
    else:
        targets = obj.targets_from_points(obj.points(unit, centre, side), centre, side)
    loss = obj(image, targets, torch.Generator().manual_seed(1))
    assert loss.shape == (1,)
    assert loss.item() < 1e-5
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert obj(other, targets, torch.Generator().manual_seed(1)).item() > 100 * max(loss.item(), 1e-9)


def test_jittered_landmark_loss_averages_the_framings_drawn_from_the_generator():
    obj = objective(form="heatmap", jitter_count=3)
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    centre, side = obj.framing(BOX)
    targets = obj.targets_from_image(target, centre, side)
    a = obj(image, targets, torch.Generator().manual_seed(5))
    b = obj(image, targets, torch.Generator().manual_seed(5))
    c = obj(image, targets, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    cs, ss = jitter_framing(centre, side, torch.Generator().manual_seed(5), 0.03, 0.05, 3)
    plain = objective(form="heatmap")
    manual = torch.stack([plain(image, plain.targets_from_image(target, cs[i:i + 1], ss[i:i + 1]))
                          for i in range(3)]).mean(0)
    torch.testing.assert_close(a, manual)


def test_landmark_objective_rejects_all_zero_group_weights():
    with pytest.raises(ConfigError, match="landmarks.groups"):
        objective(groups={g: 0.0 for g in LandmarkConfig().groups})


def test_crop_to_heatmap_maps_pixel_centres():
    # crop 256 -> heat map 64: crop pixel 1.5 (centre of the 2x... block 0..3) is heat-map pixel 0.
    torch.testing.assert_close(crop_to_heatmap(torch.tensor([1.5, 5.5]), 256, 64), torch.tensor([0.0, 1.0]))


def test_heatmap_loss_with_real_gaussians_grows_with_displacement():
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")

    def bump(x, y):
        return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2)[None, None]

    w = torch.ones(1)
    d = [losses.heatmap_loss(bump(8, 8), bump(8 + s, 8), w).item() for s in (0, 0.5, 1, 2)]
    assert d[0] == 0 and np.all(np.diff(d) > 0)


def test_lpips_look_precomputes_the_target_features():
    from stylepuppet.perceptual.lpips import untrained_lpips
    from stylepuppet.optim.objective import LPIPSLook

    torch.manual_seed(0)
    metric = untrained_lpips("tiny")
    look = LPIPSLook(metric)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    prepared = look.prepare(target)
    torch.testing.assert_close(look(prepared, images), metric(images, target.expand(2, -1, -1, -1)))
    assert torch.all(look(prepared, target) < 1e-6)
