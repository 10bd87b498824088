from typing import ClassVar

import numpy as np
import pytest
import torch

from stylepuppet.landmarks.net import LandmarkNet, LandmarkOutput, landmarks_in_image

D = torch.float64


class BrightSpotNet(LandmarkNet):
    """A one-point 'landmark net': the intensity-weighted centroid of the crop (exact, differentiable)."""

    input_size = 32
    num_points = 1
    groups: ClassVar[dict[str, np.ndarray]] = {"jaw": np.array([0])}

    def framing(self, box):
        centre = (box[:, :2] + box[:, 2:]) / 2
        side = (box[:, 2:] - box[:, :2]).amax(dim=1) * 1.5
        return centre, side

    def forward(self, crops):
        self.check_crops(crops)
        w = crops.sum(dim=1)
        w = w / w.sum(dim=(1, 2), keepdim=True)
        idx = torch.arange(self.input_size, dtype=crops.dtype)
        x = (w.sum(dim=1) * idx).sum(-1)
        y = (w.sum(dim=2) * idx).sum(-1)
        return LandmarkOutput(torch.stack([x, y], -1)[:, None, :])


def _blob(h, w, x, y, sigma=2.5):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=D), torch.arange(w, dtype=D), indexing="ij")
    g = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return g.expand(1, 3, h, w).clone()


def test_base_class_requires_subclasses_to_implement_the_interface():
    net = LandmarkNet()
    with pytest.raises(NotImplementedError):
        net.framing(torch.zeros(1, 4))
    with pytest.raises(NotImplementedError):
        net(torch.zeros(1, 3, 8, 8))


def test_check_crops_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        BrightSpotNet()(torch.zeros(1, 3, 16, 16))


def test_landmarks_in_image_maps_crop_points_back_to_image_pixels():
    # A blob at (70.3, 41.6) in a 96x128 image, framed by a box around it: the net sees it in crop
    # coordinates and the helper must report it where it is in the image.
    img = _blob(96, 128, 70.3, 41.6)
    box = torch.tensor([[58.0, 30.0, 82.0, 54.0]], dtype=D)
    pts = landmarks_in_image(BrightSpotNet(), img, box)
    assert pts.shape == (1, 1, 2)
    torch.testing.assert_close(pts[0, 0], torch.tensor([70.3, 41.6], dtype=D), atol=0.02, rtol=0)


def test_jittered_read_out_stays_on_the_point_and_is_differentiable():
    img = _blob(96, 128, 70.3, 41.6).requires_grad_(True)
    box = torch.tensor([[58.0, 30.0, 82.0, 54.0]], dtype=D)
    g = torch.Generator().manual_seed(0)
    pts = landmarks_in_image(BrightSpotNet(), img, box, jitter_count=4, generator=g)
    torch.testing.assert_close(pts[0, 0], torch.tensor([70.3, 41.6], dtype=D), atol=0.05, rtol=0)
    pts.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_landmarks_in_image_checks_shapes():
    with pytest.raises(ValueError, match="box must be"):
        landmarks_in_image(BrightSpotNet(), torch.zeros(2, 3, 8, 8), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="images must be"):
        landmarks_in_image(BrightSpotNet(), torch.zeros(2, 1, 8, 8), torch.zeros(2, 4))
