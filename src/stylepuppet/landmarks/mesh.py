"""MediaPipe's face-landmark network (Face Mesh) as a differentiable landmark net.

The network is read from MediaPipe's own ``face_landmark.tflite`` (468 points, 192² input) or from
the ``face_landmarks_detector.tflite`` inside a ``face_landmarker.task`` bundle (478 points: the
468 plus 10 iris points, 256² input, float16 weights), and rebuilt from torch ops by
:mod:`stylepuppet.landmarks.tflite_graph`; its outputs equal the LiteRT interpreter's.

Facts checked on real faces (4 photos and 14 video frames of ``shared/media``, see the tests):

* Input: RGB in [0, 1], as MediaPipe's graphs feed it (``output_tensor_float_range`` 0..1) — with
  [-1, 1] the points fit dlib's 68 slightly worse on both models.
* Output coordinates: the legacy 468-point model is mirror-consistent in the pixel-index convention
  (flipped crop → x ↦ 191 − x, measured 191.0 ± 0.15 for the point-mean), the 478-point model in
  the continuous one (x ↦ 256 − x, measured 255.96): the latter is shifted by −0.5 to pixel indices.
* "Right"/"left" of MediaPipe's FACEMESH_* connection sets is the subject's (as in 300-W): the
  points of FACEMESH_RIGHT_EYE (33, 133, ...) lie on the image's left in a frontal photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stylepuppet import weights
from stylepuppet.errors import WeightsError
from stylepuppet.landmarks.net import LandmarkNet, LandmarkOutput
from stylepuppet.landmarks.tflite_graph import Graph, GraphBuilder, TFLiteModule, load_graph

NUM_MESH_POINTS = 468

# MediaPipe's FACEMESH_* connection sets, as ordered contours (index lists; subject's right/left).
#: Outer lip contour: upper from the right corner (61) to the left corner (291), then lower back.
OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
#: Inner lip contour: upper from the right inner corner (78) to the left (308), then lower back.
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
#: FACEMESH_RIGHT_EYE: upper lid from the outer corner (33) to the inner (133), then the lower lid back.
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
#: FACEMESH_RIGHT_EYEBROW: upper edge outer → inner, then lower edge inner → outer.
RIGHT_EYEBROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_EYEBROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
#: FACEMESH_FACE_OVAL from the forehead top (10) clockwise in the image.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
#: FACEMESH_NOSE split like iBUG's nose: the ridge from between the eyes down to the tip ...
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1)
#: ... and the rest (columella, nostril base, alae).
LOWER_NOSE = (19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64)

#: The face-oval arc iBUG's jaw covers: from the right ear level (127) round the chin (152) to the
#: left (356). The forehead arc above has no iBUG counterpart (the 68 points stop at the brows).
JAW = FACE_OVAL[FACE_OVAL.index(356):FACE_OVAL.index(127) + 1][::-1]

#: Our group names (stylepuppet.landmarks.scheme.GROUPS) -> mesh indices; disjoint, 139 points in all.
MESH_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": JAW,
    "right_eyebrow": RIGHT_EYEBROW,
    "left_eyebrow": LEFT_EYEBROW,
    "nose_bridge": NOSE_BRIDGE,
    "lower_nose": LOWER_NOSE,
    "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE,
    "outer_lip": OUTER_LIP,
    "inner_lip": INNER_LIP,
}

#: A mesh index per iBUG-68 point, so 68-point code (mouth-opening ratio, FFHQ alignment) can read
#: the mesh. Eyes, brows, nose bridge and lips use MediaPipe's named contour points (eye corners
#: 33/133/362/263, lid points at thirds of the lids, lip corners 61/291 and 78/308, mid-lips
#: 0/17/13/14, brows' upper edge); the jaw and nostril points, which have no counterpart on a
#: MediaPipe contour, are the mesh points nearest to dlib's 68 on 18 real faces (both models),
#: chosen as mirror pairs. Mean distance to dlib's points: 0.05 of the inter-ocular distance.
IBUG68_FROM_MESH = np.array([
    127, 234, 93, 215, 138, 136, 149, 148, 152, 377, 378, 365, 367, 435, 323, 454, 356,  # jaw
    70, 63, 105, 66, 107,  # right eyebrow
    336, 296, 334, 293, 300,  # left eyebrow
    168, 197, 5, 4,  # nose bridge
    75, 97, 2, 326, 305,  # lower nose
    33, 160, 158, 133, 153, 144,  # right eye
    362, 385, 387, 263, 373, 380,  # left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lip
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lip
], dtype=np.int64)

#: Each mesh point's mirror image under a left-right flip of the face (28 points on the midline map to
#: themselves). Measured, not copied: the legacy model's 468 points (x, y, depth) on 40 frames of d0 and
#: d3, read on each crop and on its mirror image (x ↦ 191 − x), normalised per read-out, averaged, and
#: paired by a minimum-cost assignment; the pairing is an involution and matches MediaPipe's named
#: pairs (eye corners 33/263 and 133/362, lip corners 61/291 and 78/308, cheeks 50/280).
MESH_MIRROR = np.array([
    0, 1, 2, 248, 4, 5, 6, 249, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 250, 251, 252, 253, 254, 255, 256,
    257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274, 275, 276, 277, 278,
    279, 280, 281, 282, 283, 284, 285, 286, 287, 288, 289, 290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300,
    301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322,
    323, 94, 324, 325, 326, 327, 328, 329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341, 342, 343,
    344, 345, 346, 347, 348, 349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 360, 361, 362, 363, 364, 365,
    366, 367, 368, 369, 370, 371, 372, 373, 374, 375, 376, 377, 378, 379, 151, 152, 380, 381, 382, 383, 384, 385,
    386, 387, 388, 389, 390, 164, 391, 392, 393, 168, 394, 395, 396, 397, 398, 399, 175, 400, 401, 402, 403, 404,
    405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 195, 419, 197, 420, 199, 200, 421, 422,
    423, 424, 425, 426, 427, 428, 429, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439, 440, 441, 442, 443, 444,
    445, 446, 447, 448, 449, 450, 451, 452, 453, 454, 455, 456, 457, 458, 459, 460, 461, 462, 463, 464, 465, 466,
    467, 3, 7, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72,
    73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 95, 96, 97, 98, 99, 100,
    101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122,
    123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144,
    145, 146, 147, 148, 149, 150, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 165, 166, 167, 169, 170,
    171, 172, 173, 174, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193,
    194, 196, 198, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219,
    220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239, 240, 241,
    242, 243, 244, 245, 246, 247
], dtype=np.int64)

#: MediaPipe frames the tight box of its own points scaled by 1.5, square on the long side
#: (face_landmark_landmarks_to_roi.pbtxt: RectTransformationCalculator scale_x = scale_y = 1.5,
#: square_long; the detector's box gets the same in face_detection_front_detection_to_roi). Our
#: box is the tight box of the 68 iBUG points, which stops at the eyebrows; iterating MediaPipe's
#: tracking ROI to its fixed point on 18 real faces gives, relative to that box, a side of
#: 1.75·(w + h)/2 (± 0.035) centred 0.12·h (± 0.011) above the box centre (x offset < 0.01·w).
SIDE_SCALE = 1.75
CENTRE_SHIFT = 0.12


@dataclass
class MeshOutput(LandmarkOutput):
    """Mesh output: ``points`` [N, P, 2] (crop pixels), ``depth`` [N, P] (z, crop-pixel units,
    relative to the face centre, smaller = nearer) and ``presence`` [N] (face-presence logit)."""

    depth: Tensor | None = None
    presence: Tensor | None = None


def mesh_framing(box: Tensor) -> tuple[Tensor, Tensor]:
    """Crop centre [N, 2] and side [N] for 68-point boxes [N, 4] (x1, y1, x2, y2), MediaPipe-like."""
    if box.ndim != 2 or box.shape[-1] != 4:
        raise ValueError(f"box must be [N, 4] (x1, y1, x2, y2), got {tuple(box.shape)}")
    x1, y1, x2, y2 = box.unbind(-1)
    centre = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2 - CENTRE_SHIFT * (y2 - y1)], dim=-1)
    return centre, SIDE_SCALE * ((x2 - x1) + (y2 - y1)) / 2


class FaceMesh(LandmarkNet):
    """A MediaPipe face-landmark graph with the :class:`LandmarkNet` interface.

    ``graph`` must take one [1, S, S, 3] image and output the points (3·P values: x, y, z in input
    pixels) followed by a one-value face-presence logit (MediaPipe's output order).
    ``point_offset`` is added to the raw x, y to reach pixel-index coordinates; by default 0 for
    the legacy 468-point model and −0.5 otherwise (see the module docstring).
    """

    def __init__(self, graph: Graph, point_offset: float | None = None) -> None:
        super().__init__()
        if len(graph.inputs) != 1:
            raise WeightsError(f"a face-landmark model takes one image, this one takes {len(graph.inputs)} inputs")
        shape = graph.tensors[graph.inputs[0]].shape
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3:
            raise WeightsError(f"a face-landmark model takes a [1, S, S, 3] image, this one {list(shape)}")
        sizes = [int(np.prod(graph.tensors[i].shape)) for i in graph.outputs]
        if len(sizes) < 2 or sizes[0] % 3 or sizes[0] < 3 * NUM_MESH_POINTS or sizes[1] != 1:
            raise WeightsError(f"outputs of sizes {sizes} are not (3 × points, face presence) of a face mesh")
        self.net = TFLiteModule(graph)
        self.input_size = int(shape[1])
        self.num_points = sizes[0] // 3
        self.groups = {name: np.asarray(idx, dtype=np.int64) for name, idx in MESH_GROUPS.items()}
        # the 478-point model's 10 iris points have no measured mirror pairing (no such model here)
        self.mirror = MESH_MIRROR if self.num_points == NUM_MESH_POINTS else None
        self.ibug68 = IBUG68_FROM_MESH
        self.point_offset = (0.0 if self.num_points == NUM_MESH_POINTS else -0.5) \
            if point_offset is None else float(point_offset)
        self.description = graph.description

    def framing(self, box: Tensor) -> tuple[Tensor, Tensor]:
        """MediaPipe's framing expressed on a 68-point box: see :data:`SIDE_SCALE`."""
        return mesh_framing(box)

    def forward(self, crops: Tensor) -> MeshOutput:
        """Points of crops [N, 3, S, S] (RGB in [0, 1]) in crop pixels, depth and presence logit."""
        self.check_crops(crops)
        outputs = self.net(crops)
        raw = outputs[0].reshape(crops.shape[0], self.num_points, 3)
        return MeshOutput(points=raw[..., :2] + self.point_offset, heatmaps=None,
                          depth=raw[..., 2], presence=outputs[1].reshape(crops.shape[0]))


def load_mesh(source: str | Path, device: str | torch.device = "cpu") -> FaceMesh:
    """A :class:`FaceMesh` from a ``.tflite``, a ``face_landmarker.task`` bundle, or a registry name
    (``mediapipe-face-landmark``), in eval mode."""
    path = weights.resolve(source, kind="mesh")
    graph = load_graph(path)
    try:
        net = FaceMesh(graph)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return net.to(device).eval()


# ------------------------------------------------------------------------------ untrained stand-in

#: Channel widths per resolution (96², 48², 24², 12², 6², 3²) of the untrained stand-ins: the real
#: model's for ``full``, a few channels for ``tiny``.
_WIDTHS = {"tiny": (4, 8, 8, 8, 8, 8), "full": (16, 32, 64, 128, 128, 128)}


def untrained_mesh(size: str = "tiny") -> FaceMesh:
    """A randomly initialised mesh-shaped net (468 points) for offline runs; the caller seeds the RNG.

    Built as a TFLite-style graph (the real model's op types: residual depthwise blocks with PReLU,
    max-pool + channel PAD shortcuts) so it runs through the same code as the real one. Points
    start near the crop centre.
    """
    if size not in _WIDTHS:
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    return FaceMesh(_synthetic_graph(_WIDTHS[size], 192)).eval()


def _he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (torch.randn(shape) * (2.0 / fan_in) ** 0.5).numpy()


def _synthetic_graph(widths: tuple[int, ...], input_size: int) -> Graph:
    b = GraphBuilder()
    x = b.input((1, input_size, input_size, 3), "input")
    w0 = widths[0]
    x = b.op("CONV_2D", [x, b.constant(_he((w0, 3, 3, 3), 27)), b.constant(np.zeros(w0, np.float32))],
             padding="SAME", stride=(2, 2))
    x = b.op("PRELU", [x, b.constant(np.full((1, 1, w0), 0.25, np.float32))])
    for level, width in enumerate(widths):
        if level:
            x = _down_block(b, x, width)
        x = _res_block(b, x)
    for out in (3 * NUM_MESH_POINTS, 1):
        c = b.shape(x)[-1]
        bias = np.zeros(out, np.float32)
        if out > 1:
            bias.reshape(-1, 3)[:, :2] = input_size / 2 - 0.5
        kernel = _he((out, 3, 3, c), 9 * c) * 0.1
        y = b.op("CONV_2D", [x, b.constant(kernel), b.constant(bias)], padding="VALID", stride=(1, 1))
        b.mark_output(y)
    return b.build(description="untrained face-mesh stand-in")


def _res_block(b: GraphBuilder, x: int) -> int:
    c = b.shape(x)[-1]
    y = b.op("DEPTHWISE_CONV_2D", [x, b.constant(_he((1, 3, 3, c), 9)), b.constant(np.zeros(c, np.float32))],
             padding="SAME", stride=(1, 1))
    y = b.op("CONV_2D", [y, b.constant(_he((c, 1, 1, c), c) * 0.5), b.constant(np.zeros(c, np.float32))],
             padding="SAME", stride=(1, 1))
    y = b.op("ADD", [x, y])
    return b.op("PRELU", [y, b.constant(np.full((1, 1, c), 0.25, np.float32))])


def _down_block(b: GraphBuilder, x: int, width: int) -> int:
    c = b.shape(x)[-1]
    y = b.op("DEPTHWISE_CONV_2D", [x, b.constant(_he((1, 3, 3, c), 9)), b.constant(np.zeros(c, np.float32))],
             padding="SAME", stride=(2, 2))
    y = b.op("CONV_2D", [y, b.constant(_he((width, 1, 1, c), c) * 0.5), b.constant(np.zeros(width, np.float32))],
             padding="SAME", stride=(1, 1))
    shortcut = b.op("MAX_POOL_2D", [x], padding="SAME", stride=(2, 2), filter=(2, 2))
    if width > c:
        pads = np.array([[0, 0], [0, 0], [0, 0], [0, width - c]], dtype=np.int32)
        shortcut = b.op("PAD", [shortcut, b.constant(pads)])
    y = b.op("ADD", [shortcut, y])
    return b.op("PRELU", [y, b.constant(np.full((1, 1, width), 0.25, np.float32))])
