import numpy as np
import pytest
import torch
from engine_stubs import TinyLandmarkNet

from stylepuppet.landmarks.framing import crop_square, crop_to_image, image_to_crop
from stylepuppet.landmarks.scheme import point_weights
from stylepuppet.optim import losses

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


# ------------------------------------------------------------------------------------------ heat maps, real


def test_heatmap_loss_with_real_gaussians_grows_with_displacement():
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")

    def bump(x, y):
        return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 2)[None, None]

    w = torch.ones(1)
    d = [losses.heatmap_loss(bump(8, 8), bump(8 + s, 8), w).item() for s in (0, 0.5, 1, 2)]
    assert d[0] == 0 and np.all(np.diff(d) > 0)


# ------------------------------------------------------------------------------------------ the landmark loss


def test_landmark_loss_reads_the_crop_and_compares_as_coordinates_over_the_crop_side():
    net, size = TinyLandmarkNet(), TinyLandmarkNet.input_size
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    centre, side = torch.tensor([[16.0, 15.0], [14.0, 17.0]]), torch.tensor([20.0, 26.0])
    weights = torch.from_numpy(point_weights({"jaw": 0.5}, net.groups, 68, rest=1.0))
    seen = crop_to_image(net(crop_square(images, centre, side, size)).points, centre, side, size)
    assert torch.all(losses.landmark_loss(net, images, centre, side, weights, points=seen) < 1e-5)
    target = seen + torch.tensor([1.0, -2.0])
    expected = losses.coord_loss(image_to_crop(seen, centre, side, size), image_to_crop(target, centre, side, size),
                                 weights, torch.full((2,), float(size)))
    torch.testing.assert_close(losses.landmark_loss(net, images, centre, side, weights, points=target), expected)


def test_landmark_loss_against_heat_maps_is_the_originals():
    net = TinyLandmarkNet()
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    centre, side, weights = torch.tensor([[16.0, 16.0]]), torch.tensor([24.0]), torch.ones(68)
    maps = net(crop_square(other, centre, side, 32)).heatmaps
    expected = losses.heatmap_loss(net(crop_square(images, centre, side, 32)).heatmaps, maps, weights)
    torch.testing.assert_close(losses.landmark_loss(net, images, centre, side, weights, heatmaps=maps), expected)
    with pytest.raises(ValueError, match="heat maps"):
        losses.landmark_loss(TinyLandmarkNet(heatmaps=False), images, centre, side, weights, heatmaps=maps)
