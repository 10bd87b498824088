"""The landmark objective's mirrored framings: mapping a flipped read-out back, and refusing what cannot flip."""

from __future__ import annotations

import pytest
import torch
from engine_stubs import TinyLandmarkNet

from stylepuppet.config import LandmarkConfig
from stylepuppet.errors import ConfigError
from stylepuppet.optim.objective import LandmarkObjective, unmirror


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
