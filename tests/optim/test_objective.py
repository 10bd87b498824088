"""The landmark objective: the loss over jittered (and mirrored) framings, its targets, what it refuses."""

from __future__ import annotations

import pytest
import torch
from engine_stubs import TinyLandmarkNet

from stylepuppet.config import LandmarkConfig
from stylepuppet.errors import ConfigError
from stylepuppet.images import to_unit
from stylepuppet.landmarks.framing import jitter_framing
from stylepuppet.landmarks.net import unmirror
from stylepuppet.optim.losses import landmark_loss
from stylepuppet.optim.objective import LandmarkObjective


def test_unmirror_flips_x_and_swaps_mirror_pairs_only_in_flipped_rows() -> None:
    points = torch.tensor([[[1.0, 2.0], [5.0, 6.0], [3.0, 4.0]]]).repeat(2, 1, 1)
    mirror = torch.tensor([1, 0, 2])  # points 0 and 1 are a pair, 2 is on the midline
    flipped = torch.tensor([False, True])
    heatmaps = torch.zeros(2, 3, 4, 4)
    heatmaps[:, 0, 1, 0] = 1.0  # point 0's peak at (x 0, y 1)
    back, maps = unmirror(points, heatmaps, flipped, mirror, size=8)
    assert torch.equal(back[0], points[0]) and torch.equal(maps[0], heatmaps[0])
    assert torch.equal(back[1], torch.tensor([[2.0, 6.0], [6.0, 2.0], [4.0, 4.0]]))
    assert maps[1, 1, 1, 3] == 1.0 and maps[1].sum() == 1.0  # now point 1's, at x 3 = 4 - 1 - 0


def test_mirrored_framings_need_the_relative_form_and_known_pairs() -> None:
    with pytest.raises(ConfigError, match="form = 'relative'"):
        LandmarkObjective(TinyLandmarkNet(), LandmarkConfig(form="heatmap", jitter_count=2, jitter_flip=True))
    with pytest.raises(ConfigError, match="no known mirror pairing"):
        LandmarkObjective(TinyLandmarkNet(), LandmarkConfig(form="relative", jitter_count=2, jitter_flip=True))
    # a single framing has no second one to mirror: nothing to refuse
    assert LandmarkObjective(TinyLandmarkNet(), LandmarkConfig(jitter_count=1, jitter_flip=True)).mirror is None


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
        objective(groups=dict.fromkeys(LandmarkConfig().groups, 0.0))


def test_the_objective_without_framings_is_the_landmark_loss():
    obj = objective(form="relative", jitter_count=2)
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    centre, side = obj.framing(BOX)
    points = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(4)) * 10 + 11
    targets = obj.targets_from_points(points, centre, side)
    expected = landmark_loss(obj.net, to_unit(image), centre.expand(2, 2), side.expand(2), obj.point_weights,
                             points=points.expand(2, -1, -1))
    torch.testing.assert_close(obj(image, targets), expected)  # no generator: the plain framing only


def test_a_gamma_reads_the_generated_image_raised_to_it_and_leaves_the_targets_alone():
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    plain, squared = objective(), objective(gamma=2.0)
    centre, side = plain.framing(BOX)
    unit = to_unit(image)
    darker = unit.clamp_min(1e-4) ** 2
    assert torch.equal(squared.points(unit, centre, side), plain.points(darker, centre, side))
    targets = plain.targets_from_points(plain.points(to_unit(other), centre, side), centre, side)
    assert torch.allclose(squared(image, targets), plain(darker * 2 - 1, targets), atol=1e-6)
    assert not torch.allclose(squared(image, targets), plain(image, targets))
