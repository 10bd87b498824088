"""The identity term: dlib's face chip of G(w) at the frame's iBUG-68 points, one random framing per step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylepuppet.face.detect import DlibDetector, detect_image
from stylepuppet.identity.chip import template
from stylepuppet.identity.dlib_resnet import untrained_dlib_resnet
from stylepuppet.identity.net import IdentityNet
from stylepuppet.optim.objective import IDENTITY_READ_SIZE, IdentityObjective, identity_view
from stylepuppet.video import load_image


def face(path) -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo [1, 3, H, W] in [0, 1] and dlib's 68 points [1, 68, 2]."""
    image = load_image(path)
    points = detect_image(image, DlibDetector()).points
    return (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255,
            torch.from_numpy(np.asarray(points, dtype=np.float32))[None])


@pytest.fixture(scope="module")
def real_net() -> IdentityNet:
    return IdentityNet.load()


def tiny_net() -> IdentityNet:
    torch.manual_seed(0)
    return IdentityNet(untrained_dlib_resnet("tiny"))


def test_small_images_are_read_upscaled_with_their_points() -> None:
    image = torch.zeros(1, 3, 64, 64)
    image[0, :, 20, 40] = 1.0  # a dot at x 40, y 20
    up, points = identity_view(image, torch.tensor([[[40.0, 20.0]]]))
    assert up.shape[-1] == IDENTITY_READ_SIZE
    peak = torch.nonzero(up[0, 0] == up[0, 0].max())[0]
    assert points[0, 0].tolist() == pytest.approx([161.5, 81.5])  # (p + 0.5)·4 − 0.5
    assert abs(peak[1].item() - 161.5) <= 0.5 and abs(peak[0].item() - 81.5) <= 0.5
    big = torch.zeros(1, 3, 300, 300)
    assert identity_view(big, points)[0] is big  # large enough: read as it is


def test_the_reference_person_is_near_and_another_person_far(real_net, media_dir) -> None:
    image, points = face(media_dir / "s1.jpg")
    term = IdentityObjective.of_face(real_net, image, points)
    other, other_points = face(media_dir / "s0.jpg")  # another person, 0.76 from s1 in dlib's own pipeline
    with torch.no_grad():
        same = term(image * 2 - 1, points)
        different = term(other * 2 - 1, other_points)
    assert same.item() < 0.2 < real_net.same_person < different.item()


def test_each_step_reads_another_framing_and_no_generator_reads_dlibs(real_net, media_dir) -> None:
    image, points = face(media_dir / "s1.jpg")
    term = IdentityObjective.of_face(real_net, image, points)
    rng = torch.Generator().manual_seed(3)
    with torch.no_grad():
        steps = [term(image * 2 - 1, points, rng).item() for _ in range(4)]
        plain = [term(image * 2 - 1, points).item() for _ in range(2)]
    assert len(set(steps)) == 4  # four framings, four distances
    assert plain[0] == plain[1]
    assert max(steps) < 0.3  # every framing still sees the reference person


def test_the_term_is_differentiable_and_descends() -> None:
    net = tiny_net()
    indices, positions = template(68, size=64)
    points = torch.zeros(1, 68, 2)
    points[0, torch.as_tensor(indices)] = torch.as_tensor(positions, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    term = IdentityObjective.of_face(net, torch.rand(1, 3, 64, 64, generator=gen), points)
    image = torch.rand(1, 3, 64, 64, generator=gen).requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.01)
    with torch.no_grad():
        before = term(image * 2 - 1, points).item()
    rng = torch.Generator().manual_seed(2)
    for _ in range(30):
        optimiser.zero_grad()
        term(image * 2 - 1, points, rng).sum().backward()
        optimiser.step()
    with torch.no_grad():
        after = term(image * 2 - 1, points).item()
    assert after < 0.8 * before
