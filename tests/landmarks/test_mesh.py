"""The MediaPipe face mesh in torch: exact against LiteRT on real faces, sensible points, groups, framing."""

from __future__ import annotations

import functools
import importlib.util
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from stylepuppet.config import LandmarkConfig
from stylepuppet.errors import WeightsError
from stylepuppet.landmarks.framing import box_from_points, crop_square, crop_to_image
from stylepuppet.landmarks.mesh import (
    CENTRE_SHIFT,
    IBUG68_FROM_MESH,
    MESH_GROUPS,
    MESH_MIRROR,
    NUM_MESH_POINTS,
    SIDE_SCALE,
    FaceMesh,
    load_mesh,
    mesh_framing,
    untrained_mesh,
)
from stylepuppet.landmarks.net import landmarks_in_image, unmirror
from stylepuppet.landmarks.scheme import GROUPS, MIRROR
from stylepuppet.landmarks.tflite_graph import GraphBuilder
from stylepuppet.optim.objective import LandmarkObjective
from stylepuppet.video import load_image, open_frames

dlib = pytest.importorskip("dlib")
Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

#: (file, frame indices): photos and frames of both driving clips, several mouth states.
FACES = [("s1.jpg", [0]), ("s3.jpg", [0]), ("s5.jpg", [0]), ("d0.mp4", [0, 40]), ("d3.mp4", [0, 60, 120])]


@functools.cache
def dlib_models() -> tuple:
    models = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]) / "models"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))


def dlib_points(image: np.ndarray) -> np.ndarray:
    """dlib's 68 iBUG points [68, 2] of the largest face (an independent reference)."""
    detector, predictor = dlib_models()
    faces = detector(image, 1 if max(image.shape) <= 800 else 0)
    face = max(faces, key=lambda r: r.width())
    return np.array([[p.x, p.y] for p in predictor(image, face).parts()], dtype=np.float32)


@pytest.fixture(scope="module")
def faces(media_dir) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, RGB image, dlib 68 points) for each entry of FACES."""
    out = []
    for name, frames in FACES:
        path = media_dir / name
        if path.suffix == ".jpg":
            images = [load_image(path)]
        else:
            with open_frames(path, max_frames=max(frames) + 1) as source:
                images = [f for i, f in enumerate(source) if i in frames]
        for index, image in zip(frames, images):
            out.append((f"{name}:{index}", image, dlib_points(image)))
    return out


@pytest.fixture(scope="module")
def mesh(models_dir) -> FaceMesh:
    return load_mesh(models_dir / "face_landmark.tflite")


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def framed_crops(net: FaceMesh, faces) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The net's crops [N, 3, 192, 192] of every face (framed from dlib's 68-point box), centres, sides."""
    crops, centres, sides = [], [], []
    for _, image, points in faces:
        centre, side = net.framing(box_from_points(torch.from_numpy(points)[None]))
        crops.append(crop_square(to_tensor(image), centre, side, net.input_size))
        centres.append(centre)
        sides.append(side)
    return torch.cat(crops), torch.cat(centres), torch.cat(sides)


def test_matches_the_litert_interpreter_on_real_faces(mesh, faces, models_dir) -> None:
    crops, _, _ = framed_crops(mesh, faces)
    assert len(crops) >= 8
    with torch.no_grad():
        raw = mesh.net(crops)
    interpreter = Interpreter(model_path=str(models_dir / "face_landmark.tflite"))
    interpreter.allocate_tensors()
    ref_points, ref_flags = [], []
    for crop in crops.permute(0, 2, 3, 1).numpy():
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], crop[None])
        interpreter.invoke()
        outputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        ref_points.append(outputs[mesh.net.output_names[0]].reshape(-1))
        ref_flags.append(outputs[mesh.net.output_names[1]].reshape(-1))
    ref = np.stack(ref_points)
    got = raw[0].reshape(len(crops), -1).numpy()
    worst = np.abs(got - ref).max()
    assert worst <= 1e-4 * np.abs(ref).max(), f"worst landmark error {worst} px"
    np.testing.assert_allclose(raw[1].reshape(-1).numpy(), np.concatenate(ref_flags), rtol=1e-4)


def test_points_follow_real_faces(mesh, faces) -> None:
    for label, image, points in faces:
        with torch.no_grad():
            found = landmarks_in_image(mesh, to_tensor(image), box_from_points(torch.from_numpy(points)[None]))[0]
        interocular = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
        error = np.linalg.norm(found.numpy()[IBUG68_FROM_MESH] - points, axis=1).mean() / interocular
        assert error < 0.08, f"{label}: mesh vs dlib 68 points differ by {error:.3f} of the eye distance"
        # Subject's right eye (iBUG 36-41) is on the image's left in these frontal faces.
        assert found[list(MESH_GROUPS["right_eye"]), 0].mean() < found[list(MESH_GROUPS["left_eye"]), 0].mean()


def test_framing_reproduces_mediapipe_tracking_roi(mesh, faces) -> None:
    """One step of MediaPipe's tracking (box of the 468 points x1.5, square) lands on our framing."""
    crops, centres, sides = framed_crops(mesh, faces)
    with torch.no_grad():
        points = crop_to_image(mesh(crops).points, centres, sides, mesh.input_size)
    lo, hi = points.amin(dim=1), points.amax(dim=1)
    roi_side = 1.5 * (hi - lo).amax(dim=1)
    roi_centre = (lo + hi) / 2
    assert ((roi_side / sides - 1).abs() < 0.1).all()
    assert ((roi_centre - centres).norm(dim=1) / sides < 0.04).all()
    assert torch.sigmoid(mesh(crops).presence).min() > 0.99


def test_flip_symmetry_checks_groups_and_point_convention(mesh, faces) -> None:
    """Mirroring a crop mirrors the mesh: MediaPipe's contours map right <-> left, and the points are
    in the pixel-index convention (x of the flipped crop = S - 1 - x)."""
    crops, _, _ = framed_crops(mesh, faces[:4])
    with torch.no_grad():
        out, flipped = mesh(crops).points, mesh(crops.flip(-1)).points
    s = mesh.input_size
    assert abs(float((out[..., 0].mean(1) + flipped[..., 0].mean(1)).mean()) - (s - 1)) < 0.35
    mirrored = flipped.clone()
    mirrored[..., 0] = s - 1 - mirrored[..., 0]
    cost = torch.cdist(out, mirrored).sum(0).numpy()
    _, mirror = linear_sum_assignment(cost)
    assert (mirror[mirror] == np.arange(len(mirror))).all()
    for right, left in [("right_eye", "left_eye"), ("right_eyebrow", "left_eyebrow")]:
        assert sorted(mirror[list(MESH_GROUPS[right])]) == sorted(MESH_GROUPS[left])
    for name in ("jaw", "nose_bridge", "lower_nose", "outer_lip", "inner_lip"):
        assert sorted(mirror[list(MESH_GROUPS[name])]) == sorted(MESH_GROUPS[name])
    assert (mirror[IBUG68_FROM_MESH] == IBUG68_FROM_MESH[MIRROR]).all()  # iBUG's own mirror pairs
    assert (mirror == MESH_MIRROR).mean() > 0.95  # the stored pairing, measured on other frames


def test_stored_mirror_pairs_map_a_flipped_read_out_back(mesh, faces) -> None:
    """The loss reads mirrored crops through MESH_MIRROR: the read-out of a flipped crop mapped back
    lands where the plain read-out is, and far closer than with the points left unpaired."""
    assert (MESH_MIRROR[MESH_MIRROR] == np.arange(NUM_MESH_POINTS)).all()
    assert (MESH_MIRROR[IBUG68_FROM_MESH] == IBUG68_FROM_MESH[MIRROR]).all()
    assert mesh.mirror is MESH_MIRROR
    crops, _, _ = framed_crops(mesh, faces)
    with torch.no_grad():
        out, flipped = mesh(crops).points, mesh(crops.flip(-1)).points
    every = torch.ones(len(crops), dtype=torch.bool)
    back, _ = unmirror(flipped, None, every, torch.as_tensor(MESH_MIRROR), mesh.input_size)
    unpaired, _ = unmirror(flipped, None, every, torch.arange(NUM_MESH_POINTS), mesh.input_size)
    error = (back - out).norm(dim=-1).mean()
    assert error < 1.5  # crop pixels of 192
    assert error < 0.2 * (unpaired - out).norm(dim=-1).mean()


def test_gradients_reach_the_pixels(mesh, faces) -> None:
    _, image, points = faces[3]
    pixels = to_tensor(image).requires_grad_(True)
    found = landmarks_in_image(mesh, pixels, box_from_points(torch.from_numpy(points)[None]))
    gap = found[0, 14, 1] - found[0, 13, 1]  # inner-lip opening
    gap.backward()
    grad = pixels.grad[0].abs().sum(0)
    assert torch.isfinite(grad).all() and grad.sum() > 0
    rows, cols = torch.nonzero(grad > grad.max() * 0.05, as_tuple=True)
    mouth = points[48:60]
    assert mouth[:, 1].min() - 60 < rows.float().median() < mouth[:, 1].max() + 60
    assert mouth[:, 0].min() - 60 < cols.float().median() < mouth[:, 0].max() + 60


def test_autograd_matches_finite_differences(mesh, faces, models_dir) -> None:
    crops, _, _ = framed_crops(mesh, faces[:1])
    net = load_mesh(models_dir / "face_landmark.tflite").double()
    x = crops.double().requires_grad_(True)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = torch.randn(1, net.num_points, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def f(inp: torch.Tensor) -> torch.Tensor:
        return (net(inp).points * weights).sum()

    f(x).backward()
    analytic = float((x.grad * direction).sum())
    eps = 1e-8  # so small that (almost) no PReLU or max-pool switches branch
    with torch.no_grad():
        numeric = float((f(x + eps * direction) - f(x - eps * direction)) / (2 * eps))
    assert abs(analytic - numeric) <= 1e-3 * abs(numeric)


def test_task_bundle_and_registry_name(mesh, faces, models_dir, tmp_path, monkeypatch) -> None:
    real = models_dir / "face_landmark.tflite"
    bundle = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("face_detector.tflite", b"not used here")
        zf.write(real, "face_landmarks_detector.tflite")
    crops, _, _ = framed_crops(mesh, faces[:2])
    with torch.no_grad():
        expected = mesh(crops).points
        assert torch.equal(load_mesh(bundle)(crops).points, expected)
        monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
        (tmp_path / "cache").mkdir()
        shutil.copy(real, tmp_path / "cache" / "face_landmark.tflite")
        assert torch.equal(load_mesh("mediapipe-face-landmark")(crops).points, expected)


def test_groups_use_scheme_names_and_mediapipe_contours(mesh) -> None:
    assert set(mesh.groups) == set(GROUPS)
    members = np.concatenate(list(mesh.groups.values()))
    assert len(members) == len(set(members.tolist())) == 139  # disjoint
    assert members.max() < 468
    sizes = {name: len(idx) for name, idx in mesh.groups.items()}
    assert sizes == {"jaw": 23, "right_eyebrow": 10, "left_eyebrow": 10, "nose_bridge": 7, "lower_nose": 17,
                     "right_eye": 16, "left_eye": 16, "outer_lip": 20, "inner_lip": 20}
    assert (mesh.groups["jaw"][0], mesh.groups["jaw"][-1]) == (127, 356)
    assert IBUG68_FROM_MESH.shape == (68,) and len(set(IBUG68_FROM_MESH.tolist())) == 68
    for name in ("right_eyebrow", "left_eyebrow", "nose_bridge", "right_eye", "left_eye", "outer_lip",
                 "inner_lip"):
        assert set(IBUG68_FROM_MESH[list(GROUPS[name])].tolist()) <= set(mesh.groups[name].tolist()), name
    assert mesh.input_size == 192 and mesh.num_points == 468 and mesh.point_offset == 0.0


def test_mesh_framing_formula() -> None:
    box = torch.tensor([[100.0, 200.0, 180.0, 300.0]])
    centre, side = mesh_framing(box)
    torch.testing.assert_close(centre, torch.tensor([[140.0, 250.0 - CENTRE_SHIFT * 100]]))
    torch.testing.assert_close(side, torch.tensor([SIDE_SCALE * 90.0]))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        mesh_framing(torch.zeros(4))


def test_untrained_mesh_is_seeded_and_differentiable() -> None:
    torch.manual_seed(3)
    a = untrained_mesh("tiny")
    torch.manual_seed(3)
    b = untrained_mesh("tiny")
    crops = torch.rand(2, 3, 192, 192, requires_grad=True)
    out = a(crops)
    assert out.points.shape == (2, 468, 2) and out.depth.shape == (2, 468) and out.presence.shape == (2,)
    torch.testing.assert_close(out.points, b(crops).points)
    assert ((out.points > 0) & (out.points < 191)).float().mean() > 0.95
    out.points.sum().backward()
    assert crops.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expects crops"):
        a(torch.rand(1, 3, 64, 64))


def test_a_graph_that_is_no_face_mesh_is_refused() -> None:
    b = GraphBuilder()
    x = b.input((1, 8, 8, 3))
    b.mark_output(b.op("CONV_2D", [x, b.constant(np.ones((5, 8, 8, 3), np.float32)),
                                   b.constant(np.zeros(5, np.float32))], padding="VALID", stride=(1, 1)))
    with pytest.raises(WeightsError, match="not .* of a face mesh"):
        FaceMesh(b.build())


def test_ibug_mirror_pairs_map_dlibs_read_out_of_a_flipped_face_back(faces) -> None:
    """scheme.MIRROR (used by FAN's mirrored framings) checked on an independent reader: dlib's 68
    points of a flipped photo, mapped back, land on its points of the photo."""
    assert (MIRROR[MIRROR] == np.arange(68)).all()
    for _, image, points in faces[:3]:
        unflipped = dlib_points(np.ascontiguousarray(image[:, ::-1]))
        unflipped[:, 0] = image.shape[1] - 1 - unflipped[:, 0]
        size = np.linalg.norm(points.max(0) - points.min(0))
        assert np.linalg.norm(unflipped[MIRROR] - points, axis=1).mean() < 0.02 * size
        assert np.linalg.norm(unflipped - points, axis=1).mean() > 0.1 * size  # unpaired, they do not


def test_the_loss_reads_mirrored_framings_as_the_same_face(mesh, faces) -> None:
    """A real face against its own read-out: the mirrored framing costs about a pixel per point,
    as much as the net's own left-right asymmetry; with the points left unpaired, far more."""

    crops, _, _ = framed_crops(mesh, faces[:3])
    cfg = LandmarkConfig(net="mesh", jitter_count=2, jitter_shift=0.0, jitter_scale=0.0, jitter_flip=True)
    obj = LandmarkObjective(mesh, cfg)
    centre, side = torch.full((1, 2), 95.5), torch.full((1,), 192.0)
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        losses = []
        for crop in crops:
            target = obj.targets_from_points(obj.points(crop[None], centre, side), centre, side)
            paired = obj(crop[None] * 2 - 1, target, rng)
            obj.mirror = torch.arange(NUM_MESH_POINTS)
            unpaired = obj(crop[None] * 2 - 1, target, rng)
            obj.mirror = torch.as_tensor(MESH_MIRROR)
            losses.append((float(paired), float(unpaired)))
    for paired, unpaired in losses:
        assert paired < 2.0 / 192  # half of it from the mirrored copy's ~1 px per point
        assert unpaired > 10 * paired
