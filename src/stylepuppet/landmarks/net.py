"""The interface every landmark network of the losses shares (FAN heat maps, MediaPipe mesh).

A landmark net sees a square RGB crop of ``input_size`` pixels in [0, 1] and returns its points in
that crop's pixel coordinates (pixel-index convention: the centre of pixel ``i`` is ``i``). How it
wants a face framed inside a larger image is its own business (``framing``), so the losses can cut
the same differentiable crop out of a driving frame and out of G(w) whichever net is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from stylepuppet.landmarks.framing import crop_square, crop_to_image, jitter_framing

#: Renders heat maps [N, P, h, h] from points [N, P, 2] given in heat-map pixels (FAN's target maps).
HeatmapRenderer = Callable[[Tensor, int], Tensor]


@dataclass
class LandmarkOutput:
    """What a landmark net returns for crops [N, 3, S, S].

    ``points`` [N, P, 2] (x, y) in crop pixels, differentiable w.r.t. the crops; ``heatmaps``
    [N, P, h, w] for heat-map nets (FAN), None otherwise.
    """

    points: Tensor
    heatmaps: Tensor | None = None


class LandmarkNet(nn.Module):
    """Base class: subclasses set ``input_size``, ``num_points``, ``groups`` and implement
    :meth:`framing` and :meth:`forward`.

    ``groups`` maps the group names of :mod:`stylepuppet.landmarks.scheme` to this net's point indices,
    so group weights such as ``mouth=5`` mean the same for every net. ``mirror`` [num_points] gives
    each point's index on a left-right flipped face (None: unknown), so the loss can also read
    mirrored crops. ``ibug68`` [68] gives the net's point standing for each iBUG-68 point (None:
    none known), so 68-point code (dlib's face chip of the identity term) can read any net.
    """

    input_size: int
    num_points: int
    groups: dict[str, np.ndarray]
    mirror: np.ndarray | None = None
    ibug68: np.ndarray | None = None

    def framing(self, box: Tensor) -> tuple[Tensor, Tensor]:
        """Crop centre [N, 2] (x, y) and side [N] in image pixels for face boxes [N, 4] (x1, y1, x2, y2)."""
        raise NotImplementedError

    def forward(self, crops: Tensor) -> LandmarkOutput:
        """Landmarks of crops [N, 3, S, S] (RGB in [0, 1], S = input_size) in crop pixels."""
        raise NotImplementedError

    def check_crops(self, crops: Tensor) -> None:
        """Raise a ValueError unless ``crops`` is [N, 3, input_size, input_size]."""
        s = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (3, s, s):
            raise ValueError(f"{type(self).__name__} expects crops [N, 3, {s}, {s}], got {tuple(crops.shape)}")


def read_points(net: LandmarkNet, images01: Tensor, centre: Tensor, side: Tensor) -> Tensor:
    """The net's landmarks [N, P, 2] of images [N, 3, H, W] in [0, 1] framed at ``centre`` [N, 2] / ``side`` [N],
    in image pixels (differentiable w.r.t. the images)."""
    size = int(net.input_size)
    out = net(crop_square(images01, centre, side, size))
    return crop_to_image(out.points, centre, side, size)


def jittered_points(net: LandmarkNet, images01: Tensor, centre: Tensor, side: Tensor,
                    generator: torch.Generator | None, shift: float, scale: float, count: int) -> Tensor:
    """The net's landmarks [count, N, P, 2] of images [N, 3, H, W] in [0, 1], read at ``count`` random framings
    around each (``centre`` [N, 2], ``side`` [N]; ±``shift``·side, ±``scale``·side, drawn from ``generator``).
    Their mean is a read-out that does not hinge on one exact crop, their spread how steadily the net reads."""
    c, s = jitter_framing(centre, side, generator, shift, scale, count)
    return read_points(net, images01.repeat(count, 1, 1, 1), c, s).view(count, images01.shape[0], -1, 2)


def unmirror(points: Tensor, heatmaps: Tensor | None, flipped: Tensor, mirror: Tensor,
             size: int) -> tuple[Tensor, Tensor | None]:
    """The net's read-out of mirrored crops mapped back onto the unflipped crop: for the rows where
    ``flipped`` [N] is set, x ↦ size − 1 − x and point i takes the read-out of its mirror ``mirror[i]``
    (heat maps [N, P, h, h] flipped back and permuted alike). points [N, P, 2] in crop pixels."""
    back = points[:, mirror]
    back = torch.stack([size - 1 - back[..., 0], back[..., 1]], dim=-1)
    points = torch.where(flipped[:, None, None], back, points)
    if heatmaps is not None:
        heatmaps = torch.where(flipped[:, None, None, None], heatmaps[:, mirror].flip(-1), heatmaps)
    return points, heatmaps


def landmarks_in_image(net: LandmarkNet, images: Tensor, box: Tensor, *, jitter_count: int = 0,
                       generator: torch.Generator | None = None, shift: float = 0.03,
                       scale: float = 0.05) -> Tensor:
    """Landmarks [N, P, 2] in image pixels of faces in ``images`` [N, 3, H, W] (RGB in **[0, 1]**).

    ``box`` [N, 4] is each face's box in image pixels; the net frames it its own way. With
    ``jitter_count`` > 0 the points are the mean over that many random framings (see
    :func:`jittered_points`). Differentiable w.r.t. the images.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if box.shape != (images.shape[0], 4):
        raise ValueError(f"box must be [{images.shape[0]}, 4], got {tuple(box.shape)}")
    centre, side = net.framing(box.to(device=images.device, dtype=images.dtype))
    if jitter_count > 0:
        return jittered_points(net, images, centre, side, generator, shift, scale, jitter_count).mean(dim=0)
    return read_points(net, images, centre, side)
