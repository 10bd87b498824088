import pytest
import torch
import torch.nn.functional as F

from stylepuppet.landmarks.framing import (
    box_from_points,
    crop_square,
    crop_to_image,
    fan_framing,
    image_to_crop,
    jitter_framing,
    resize_points,
)


def _dot_image(h, w, x, y):
    img = torch.zeros(1, 1, h, w, dtype=torch.float64)
    img[0, 0, y, x] = 1.0
    return img


def test_identity_crop_reproduces_the_image():
    img = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    centre = torch.full((2, 2), 7.5, dtype=torch.float64)
    side = torch.full((2,), 16.0, dtype=torch.float64)
    out = crop_square(img, centre, side, 16)
    assert torch.allclose(out, img, atol=1e-12)


def test_crop_moves_a_dot_where_the_point_mapping_says():
    img = _dot_image(32, 32, x=20, y=9)
    centre = torch.tensor([[17.5, 10.5]], dtype=torch.float64)
    side = torch.tensor([16.0], dtype=torch.float64)
    out = crop_square(img, centre, side, 16)
    y, x = divmod(int(out.flatten().argmax()), 16)
    mapped = image_to_crop(torch.tensor([[[20.0, 9.0]]], dtype=torch.float64), centre, side, 16)
    assert (x, y) == (round(mapped[0, 0, 0].item()), round(mapped[0, 0, 1].item()))
    back = crop_to_image(mapped, centre, side, 16)
    assert torch.allclose(back, torch.tensor([[[20.0, 9.0]]], dtype=torch.float64))


def test_large_downscale_is_box_filtered_not_aliased():
    # A fine checkerboard averages to grey once shrunk 8x; plain bilinear sampling would alias it.
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    img = ((yy + xx) % 2).to(torch.float64)[None, None]
    out = crop_square(img, torch.tensor([[63.5, 63.5]], dtype=torch.float64),
                      torch.tensor([128.0], dtype=torch.float64), 16)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-9)


def test_fan_framing_uses_face_alignment_constants():
    centre, side = fan_framing(torch.tensor([[10.0, 20.0, 110.0, 150.0]]))
    assert torch.allclose(centre, torch.tensor([[60.0, 85.0 - 0.12 * 130.0]]))
    assert torch.allclose(side, torch.tensor([200.0 * 230.0 / 195.0]))


def test_box_from_points_and_gradients_flow_through_the_crop():
    pts = torch.tensor([[[1.0, 5.0], [4.0, 2.0], [3.0, 9.0]]])
    assert torch.equal(box_from_points(pts), torch.tensor([[1.0, 2.0, 4.0, 9.0]]))
    img = torch.rand(1, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    centre, side = torch.tensor([[9.5, 9.5]], dtype=torch.float64), torch.tensor([12.0], dtype=torch.float64)
    out = crop_square(img, centre, side, 8)
    out.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_jitter_stays_within_bounds_and_is_seeded():
    centre = torch.tensor([[50.0, 60.0]])
    side = torch.tensor([100.0])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    c1, s1 = jitter_framing(centre, side, g1, shift=0.03, scale=0.05, count=64)
    c2, s2 = jitter_framing(centre, side, g2, shift=0.03, scale=0.05, count=64)
    assert torch.equal(c1, c2) and torch.equal(s1, s2)
    assert c1.shape == (64, 2) and s1.shape == (64,)
    assert torch.all((c1 - centre).abs() <= 3.0 + 1e-5)
    assert torch.all((s1 / 100 - 1).abs() <= 0.05 + 1e-6)
    assert (s1.max() - s1.min()) > 0.05


def _reference_crop(images, centre, side, size):
    """The textbook two-stage crop: avg_pool2d by int(min side / size), then grid_sample (bilinear, zeros)."""
    h, w = images.shape[-2:]
    factor = max(1, min(int(side.min().item() / size), h, w))
    if factor > 1:
        images = F.avg_pool2d(images, factor)
        centre, side = (centre - (factor - 1) / 2) / factor, side / factor
        h, w = images.shape[-2:]
    theta = torch.zeros(images.shape[0], 2, 3, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = side / w, side / h
    theta[:, 0, 2], theta[:, 1, 2] = (2 * centre[:, 0] + 1) / w - 1, (2 * centre[:, 1] + 1) / h - 1
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize(("height", "size", "side"), [(64, 32, 40.0), (100, 16, 37.3), (128, 16, 200.0),
                                                      (96, 24, 60.0), (64, 48, 150.0)])
def test_crop_equals_avg_pool_then_grid_sample_with_gradients(height, size, side):
    g = torch.Generator().manual_seed(height)
    img = torch.rand(3, 2, height, height + 7, dtype=torch.float64, generator=g)
    centre = torch.rand(3, 2, dtype=torch.float64, generator=g) * height * 0.8 + height * 0.1
    sides = torch.tensor([side, side * 1.07, side * 0.96], dtype=torch.float64)
    cot = torch.randn(3, 2, size, size, dtype=torch.float64, generator=g)
    grads = []
    for fn in (crop_square, _reference_crop):
        leaves = [t.clone().requires_grad_(True) for t in (img, centre, sides)]
        out = fn(*leaves, size)
        out.backward(cot)
        grads.append([out.detach()] + [t.grad for t in leaves])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_crop_never_reads_a_value_back_from_the_device():
    # Meta tensors have no data: any .item() / int(tensor) in crop_square would raise here.
    img = torch.empty(2, 3, 64, 64, device="meta")
    out = crop_square(img, torch.empty(2, 2, device="meta"), torch.empty(2, device="meta"), 16)
    assert out.shape == (2, 3, 16, 16) and out.device.type == "meta"


def test_resize_points_maps_pixel_centres_between_grids():
    # crop 256 -> heat map 64: crop pixel 1.5 (the centre of the 4-pixel block 0..3) is heat-map pixel 0
    torch.testing.assert_close(resize_points(torch.tensor([1.5, 5.5]), 256, 64), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(resize_points(torch.tensor([0.0, 1.0]), 64, 256), torch.tensor([1.5, 5.5]))
