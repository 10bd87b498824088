"""Identity of a face as dlib measures it: chip + descriptor network, and the distance between two faces."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from stylepuppet.identity.chip import face_chips
from stylepuppet.identity.dlib_resnet import DlibResNet, load_dlib_resnet


def identity_distance(desc_a: Tensor, desc_b: Tensor) -> Tensor:
    """Euclidean distance between descriptors [..., 128] (broadcast): the distance dlib's same-person line
    (0.6 for its ResNet, :attr:`IdentityNet.same_person`) is drawn on."""
    return torch.linalg.vector_norm(desc_a - desc_b, dim=-1)


class IdentityNet(nn.Module):
    """Face images and their landmarks → dlib's face descriptor, differentiable in the images."""

    def __init__(self, net: DlibResNet) -> None:
        super().__init__()
        self.net = net
        #: Descriptors nearer than this are the same person (the threshold stored in the network file).
        self.same_person = net.distance_threshold

    @classmethod
    def load(cls, path: str | Path | None = None) -> IdentityNet:
        """dlib's network from ``path`` (a file or registry name; default: the installed copy), in eval mode."""
        return cls(load_dlib_resnet(path)).eval()

    def descriptor(self, images01: Tensor, landmarks: Tensor, *, jitter: int = 0,
                   generator: torch.Generator | None = None, mirror: bool = False) -> Tensor:
        """Descriptors [N, 128] of images [N, 3, H, W] (RGB in [0, 1]) framed by landmarks [N, 68|5, 2].

        Without ``jitter``/``mirror`` this is dlib's ``compute_face_descriptor(img, shape)``; with them, the
        mean over the jittered (and mirrored) framings of :func:`~stylepuppet.identity.chip.face_chips`,
        as dlib's ``num_jitters`` averages its jittered chips.
        """
        chips = face_chips(images01, landmarks, jitter=jitter, generator=generator, mirror=mirror,
                           size=self.net.chip_size)
        descriptors = self.net(chips)
        return descriptors.view(-1, images01.shape[0], descriptors.shape[-1]).mean(dim=0)
