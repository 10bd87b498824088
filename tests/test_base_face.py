"""Free mode's base face: similarity fits, the size-free shape score, framing calibration, best start."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from stylepuppet.base_face import (apply_similarity, calibrated_framing, choose_start, fit_similarity,
                                   shape_distance)


def _similar(points: torch.Tensor, scale: float, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ (scale * rot).T + torch.tensor(shift)


def test_fit_similarity_recovers_a_known_transform() -> None:
    src = torch.randn(3, 20, 2, generator=torch.Generator().manual_seed(0)) * 10
    dst = _similar(src, 1.3, 0.2, (4.0, -7.0))
    k, shift = fit_similarity(src, dst, torch.ones(20))
    assert torch.allclose(k.abs(), torch.full((3,), 1.3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(torch.angle(k), torch.full((3,), 0.2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(apply_similarity(src, k, shift), dst, atol=1e-4)


def test_fit_similarity_uses_only_weighted_points() -> None:
    src = torch.randn(1, 10, 2, generator=torch.Generator().manual_seed(1)) * 10
    dst = _similar(src, 0.8, -0.1, (1.0, 2.0))
    dst[:, 5:] += 50.0  # unweighted points moved far away must not change the fit
    weights = torch.cat([torch.ones(5), torch.zeros(5)])
    k, shift = fit_similarity(src, dst, weights)
    assert torch.allclose(apply_similarity(src[:, :5], k, shift), dst[:, :5], atol=1e-4)


def test_shape_distance_ignores_pose_and_size_but_not_expression() -> None:
    ref = torch.randn(12, 2, generator=torch.Generator().manual_seed(2)) * 20
    same_shape = torch.stack([_similar(ref, 0.5, 0.3, (10.0, 5.0)), _similar(ref, 2.0, -0.4, (-3.0, 0.0))])
    assert torch.allclose(shape_distance(same_shape, ref, torch.ones(12)), torch.zeros(2),
                          atol=1e-5)
    changed = ref.clone()
    changed[0] += torch.tensor([0.0, 8.0])  # one point moved: an expression change
    small, big = shape_distance(torch.stack([changed, _similar(changed, 3.0, 0.0, (0.0, 0.0))]), ref,
                                torch.ones(12))
    assert small > 0.01
    assert torch.isclose(small, big, rtol=1e-4)  # the same change at another size scores the same


class _IdealReader:
    """Reads the true points of the face wherever it is framed (a perfect landmark net)."""

    def __init__(self, face: torch.Tensor) -> None:
        self.face = face

    def points(self, images: torch.Tensor, centre: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return self.face.expand(images.shape[0], -1, -1)


def test_calibrated_framing_frames_the_face_like_the_driver() -> None:
    reference = torch.randn(15, 2, generator=torch.Generator().manual_seed(3)) * 8 + 32
    face = _similar(reference, 1.2, 0.0, (-4.0, 3.0))  # G draws its face 20% larger and elsewhere
    centre, side = torch.tensor([[33.0, 30.0]]), torch.tensor([40.0])
    c, s, points = calibrated_framing(_IdealReader(face), torch.zeros(1, 3, 64, 64), reference, centre, side,
                                      torch.ones(15))
    assert torch.allclose(s, torch.tensor([48.0]), atol=1e-4)
    assert torch.allclose(c, _similar(centre, 1.2, 0.0, (-4.0, 3.0)), atol=1e-4)
    assert torch.equal(points[0], face)


def _dcgan_and_mesh(models_dir: Path):
    from stylepuppet.config import LandmarkConfig
    from stylepuppet.models.dcgan import load_dcgan
    from stylepuppet.models.mesh import load_mesh
    from stylepuppet.objective import LandmarkObjective

    G = load_dcgan(models_dir / "digiface_dcgan64_G.pt")
    mesh = load_mesh(models_dir / "face_landmark.tflite").eval()
    return G, mesh, LandmarkObjective(mesh, LandmarkConfig(net="mesh", jitter_count=0))


def test_choose_start_picks_the_candidate_whose_shape_matches(models_dir: Path, monkeypatch) -> None:
    from stylepuppet import base_face
    from stylepuppet.objective import to_unit

    monkeypatch.setattr(base_face, "STEADIEST_SHARE", 1.0)  # shape alone decides here
    G, mesh, obj = _dcgan_and_mesh(models_dir)
    centre, side = torch.tensor([[32.0, 40.0]]), torch.tensor([70.0])
    rigid = torch.ones(mesh.num_points)
    candidates = G.candidate_latents(12, torch.Generator().manual_seed(5))
    with torch.no_grad():
        own = obj.points(to_unit(G.render(candidates[7:8])), centre, side)[0]
    # the driver's reference is candidate 7's face, moved and resized: candidate 7 must win
    reference = _similar(own, 0.9, 0.05, (2.0, -1.0))
    start = choose_start(G, obj, reference, centre, side, rigid, count=12, seed=5)
    assert torch.equal(start, candidates[7:8])


def test_a_face_reads_steadier_than_noise_and_only_steady_faces_compete(models_dir: Path, media_dir: Path) -> None:
    from stylepuppet.base_face import STEADIEST_SHARE, readout_spread
    from stylepuppet.objective import to_unit

    G, mesh, obj = _dcgan_and_mesh(models_dir)
    rng = torch.Generator().manual_seed(0)
    candidates = G.candidate_latents(16, torch.Generator().manual_seed(5))
    with torch.no_grad():
        faces = to_unit(G.render(candidates))
    noise = torch.rand(4, 3, 64, 64, generator=rng)
    centre, side = torch.tensor([[32.0, 38.0]]).expand(20, 2), torch.full((20,), 75.0)
    spread = readout_spread(obj, torch.cat([faces, noise]), centre, side, rng)
    assert spread[:16].median() < spread[16:].min()
    reference = torch.zeros(mesh.num_points, 2)
    reference[:, 0] = torch.linspace(20, 44, mesh.num_points)
    reference[:, 1] = torch.linspace(20, 56, mesh.num_points) ** 1.1
    start = choose_start(G, obj, reference, torch.tensor([[32.0, 38.0]]), torch.tensor([75.0]),
                         torch.ones(mesh.num_points), count=16, seed=5)
    again = torch.Generator().manual_seed(5)
    candidates = G.candidate_latents(16, again)
    chosen = int(torch.nonzero((candidates == start).all(dim=-1).all(dim=-1))[0])
    with torch.no_grad():
        images = to_unit(G.render(candidates))
    c, s, _ = calibrated_framing(obj, images, reference, torch.tensor([[32.0, 38.0]]), torch.tensor([75.0]),
                                 torch.ones(mesh.num_points))
    spreads = readout_spread(obj, images, c, s, again)
    assert chosen in torch.argsort(spreads)[:round(STEADIEST_SHARE * 16)].tolist()
