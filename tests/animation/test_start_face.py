"""Free mode's start face: similarity fits, the size-free shape score, framing calibration, best start."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from stylepuppet.animation import start_face
from stylepuppet.animation.look import face68
from stylepuppet.animation.start_face import (
    CLEAREST_SHARE,
    MOUTH_RING_SCALES,
    PRESENT_SHARE,
    STEADIEST_SHARE,
    best_candidates,
    calibrated_framing,
    choose_start_face,
    luminance_at,
    most_expressive_frame,
    mouth_clearance,
    present_half,
    readout_spread,
    rehearsal_frames,
    rehearsal_share,
    shape_distance,
)
from stylepuppet.config import LandmarkConfig, LossWeights, Schedule, preset
from stylepuppet.generators.loader import load_latent_generator
from stylepuppet.identity.dlib_resnet import untrained_dlib_resnet
from stylepuppet.identity.net import IdentityNet
from stylepuppet.images import to_unit
from stylepuppet.landmarks.mesh import load_mesh
from stylepuppet.landmarks.scheme import GROUPS
from stylepuppet.optim.objective import LandmarkObjective
from stylepuppet.optim.projector import Projector


def _similar(points: torch.Tensor, scale: float, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ (scale * rot).T + torch.tensor(shift)


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


def test_luminance_at_samples_rec601_luma_at_pixel_indices() -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    at = torch.tensor([[[3.0, 5.0], [0.0, 7.0]], [[6.0, 1.0], [2.5, 4.0]]])  # (x, y) pixel indices
    expected = torch.stack([torch.stack([luma[0, 5, 3], luma[0, 7, 0]]),
                            torch.stack([luma[1, 1, 6], (luma[1, 4, 2] + luma[1, 4, 3]) / 2])])
    assert torch.allclose(luminance_at(images, at), expected, atol=1e-6)


def _mouth_face(skin: float, ring: float, line: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """A flat 64² face of luminance ``skin`` with a mouth: lips on a circle of radius 8 about (32, 40),
    the line between them a dark stripe, the skin 9–15 px from the mouth's centre painted ``ring``,
    and one point per eye at (14, 12) and (50, 12)."""
    angles = torch.linspace(0, 2 * math.pi, 13)[:-1]
    outer = torch.stack([32 + 8 * torch.cos(angles), 40 + 8 * torch.sin(angles)], dim=-1)
    inner = torch.stack([torch.linspace(26, 38, 6), torch.full((6,), 40.0)], dim=-1)
    eyes = torch.tensor([[14.0, 12.0], [50.0, 12.0]])
    image = torch.full((1, 3, 64, 64), skin)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r = ((xx - 32) ** 2 + (yy - 40) ** 2).sqrt()
    image[..., (r > 9) & (r < 15)] = ring
    image[..., 39:42, 24:41] = line
    groups = {"outer_lip": list(range(12)), "inner_lip": list(range(12, 18)), "right_eye": [18], "left_eye": [19]}
    return image, torch.cat([outer, inner, eyes])[None], groups


def test_mouth_clearance_is_the_skin_round_the_mouth_over_the_cheeks() -> None:
    assert all(9 + 1.5 < 8 * k < 15 - 1.5 for k in MOUTH_RING_SCALES)  # the sampled ring lies in the painted one
    bare, points, groups = _mouth_face(skin=0.8, ring=0.8, line=0.2)
    bearded, _, _ = _mouth_face(skin=0.8, ring=0.3, line=0.2)
    mirrored = points.clone()
    mirrored[..., 0] = 64 - mirrored[..., 0]  # eyes and lips listed the other way round: the same face
    clearance = mouth_clearance(torch.cat([bare, bearded, bearded]), torch.cat([points, points, mirrored]), groups)
    assert torch.allclose(clearance, torch.tensor([1.0, 0.3 / 0.8, 0.3 / 0.8]), atol=1e-5)


class _MouthWorld:
    """A fake generator and landmark objective for :func:`best_candidates`. Latent ``i`` renders a mouth
    whose surrounding skin has luminance ``rings[i]``; its points are the mouth's plus a chin point
    ``drops[i]`` pixels below the driver's (its shape distance), read the same at any framing."""

    num_ws, jitter_shift, jitter_scale = 1, 0.0, 0.0

    def __init__(self, rings: list[float], drops: list[float]) -> None:
        self.rings, self.drops = rings, drops
        _, mouth, groups = _mouth_face(0.8, 0.8, 0.2)
        self.reference = torch.cat([mouth[0], torch.tensor([[32.0, 58.0]])])
        self.net = type("Net", (), {"groups": groups})()
        self.point_weights = torch.ones(len(self.reference))

    def candidate_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.arange(float(n)).reshape(n, 1, 1)

    def render(self, latents: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return torch.cat([_mouth_face(0.8, self.rings[int(i)], 0.2)[0] for i in latents.flatten()]) * 2 - 1

    def points(self, images01: torch.Tensor, centre: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        ring = images01[:, 0, 40, 43]  # a pixel of the painted ring tells which face this is
        which = (ring[:, None] - torch.tensor(self.rings)).abs().argmin(dim=1)
        out = self.reference.expand(len(which), -1, -1).clone()
        out[:, -1, 1] += torch.tensor(self.drops)[which]
        return out


def test_best_candidates_pass_over_faces_whose_mouth_barely_shows(monkeypatch) -> None:
    monkeypatch.setattr(start_face, "STEADIEST_SHARE", 1.0)  # all read equally steadily here
    monkeypatch.setattr(start_face, "readout_spread", lambda obj, images, centre, side, rng: torch.zeros(len(images)))
    # faces 0 and 1: skin round the mouth as dark as a beard; 2 and 3: bare. 0 matches the driver best.
    world = _MouthWorld(rings=[0.3, 0.35, 0.7, 0.75], drops=[0.0, 1.0, 2.0, 3.0])
    start = best_candidates(world, world, world.reference, torch.tensor([[32.0, 40.0]]), torch.tensor([40.0]),
                         torch.ones(len(world.reference)), count=4, seed=0)
    assert int(start) == 2  # the best match among the bare-mouthed half


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
    G = load_latent_generator(models_dir / "digiface_dcgan64_G.pt", "w")
    mesh = load_mesh(models_dir / "face_landmark.tflite").eval()
    return G, mesh, LandmarkObjective(mesh, LandmarkConfig(net="mesh", jitter_count=0))


def test_best_candidates_are_those_whose_shape_matches(models_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(start_face, "STEADIEST_SHARE", 1.0)  # shape alone decides here
    monkeypatch.setattr(start_face, "CLEAREST_SHARE", 1.0)
    G, mesh, obj = _dcgan_and_mesh(models_dir)
    centre, side = torch.tensor([[32.0, 40.0]]), torch.tensor([70.0])
    rigid = torch.ones(mesh.num_points)
    candidates = G.candidate_latents(12, torch.Generator().manual_seed(5))
    with torch.no_grad():
        own = obj.points(to_unit(G.render(candidates[7:8])), centre, side)[0]
    # the driver's reference is candidate 7's face, moved and resized: candidate 7 must win
    reference = _similar(own, 0.9, 0.05, (2.0, -1.0))
    start = best_candidates(G, obj, reference, centre, side, rigid, count=12, seed=5)
    assert torch.equal(start, candidates[7:8])


def test_a_face_reads_steadier_than_noise_and_only_steady_present_clear_mouthed_faces_compete(
        models_dir: Path) -> None:
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
    start = best_candidates(G, obj, reference, torch.tensor([[32.0, 38.0]]), torch.tensor([75.0]),
                            torch.ones(mesh.num_points), count=16, seed=5, presence=True)
    again = torch.Generator().manual_seed(5)
    candidates = G.candidate_latents(16, again)
    chosen = int(torch.nonzero((candidates == start).all(dim=-1).all(dim=-1))[0])
    with torch.no_grad():
        images = to_unit(G.render(candidates))
    c, s, points = calibrated_framing(obj, images, reference, torch.tensor([[32.0, 38.0]]), torch.tensor([75.0]),
                                      torch.ones(mesh.num_points))
    spreads = readout_spread(obj, images, c, s, again)
    steady = torch.argsort(spreads)[:round(STEADIEST_SHARE * 16)]
    present = obj.presence(images, c, s)[steady]
    steady = steady[torch.argsort(present, descending=True)[:round(PRESENT_SHARE * len(steady))]]
    clearance = mouth_clearance(images, points, mesh.groups)[steady]
    clearest = steady[torch.argsort(clearance, descending=True)[:round(CLEAREST_SHARE * len(steady))]]
    assert chosen in clearest.tolist()


def test_the_presence_screen_keeps_the_steady_half_the_net_is_surest_of() -> None:
    presence = torch.tensor([5.0, -1.0, 9.0, 0.0, 7.0, 3.0, 8.0, 2.0])
    steady = torch.tensor([1, 3, 4, 5, 7, 0])  # 2 and 6 score highest but are not steady
    assert present_half(steady, presence).tolist() == [4, 0, 5]
    assert present_half(steady[:1], presence).tolist() == [1]  # never none


def test_the_rehearsal_frames_are_the_most_expressive_and_the_widest_open_once_each() -> None:
    rng = torch.Generator().manual_seed(2)
    ref = torch.randn(68, 2, generator=rng) * 10
    frames = ref.repeat(4, 1, 1)
    frames[1, GROUPS["jaw"]] += torch.randn(len(GROUPS["jaw"]), 2, generator=rng) * 3  # a big change, mouth shut
    frames[3, GROUPS["inner_lip"][6], 1] = ref[GROUPS["inner_lip"], 1].max() + 4.0  # widest open, a smaller change
    weights = torch.ones(68)
    assert most_expressive_frame(frames, 0, weights) == 1
    assert rehearsal_frames(frames, 0, weights, GROUPS) == [1, 3]
    assert rehearsal_frames(frames[[0, 3]], 0, weights, GROUPS) == [1]


def test_most_expressive_frame_is_the_largest_change_of_shape_not_of_pose() -> None:
    ref = torch.randn(12, 2, generator=torch.Generator().manual_seed(6)) * 10
    smile, grin = ref.clone(), ref.clone()
    smile[3] += torch.tensor([0.0, 2.0])
    grin[3] += torch.tensor([0.0, 5.0])
    frames = torch.stack([ref, _similar(ref, 2.0, 0.5, (30.0, 0.0)), grin, smile])  # 1: same face, moved
    assert most_expressive_frame(frames, 0, torch.ones(12)) == 2


def test_a_rehearsal_tells_a_face_that_follows_from_one_that_cannot(models_dir: Path) -> None:
    G, _, obj = _dcgan_and_mesh(models_dir)
    two = G.candidate_latents(2, torch.Generator().manual_seed(3))
    start = two[:1]
    centre, side = torch.tensor([[32.0, 36.0]]), torch.tensor([60.0])
    with torch.no_grad():  # a target the generator can reach: the face a third of the way to another
        goal = obj.points(to_unit(G.render(G.constrain(start + 0.3 * (two[1:] - start)))), centre, side)
    targets = obj.targets_from_points(goal, centre, side)
    weights, schedule = LossWeights(look=0.0, landmark=300.0, fidelity=0.9), Schedule(steps=15, lr=0.03, w_noise=0.0)

    class Frozen:
        """The same generator, except that its face cannot change."""

        def __getattr__(self, name: str):
            return getattr(G, name)

        def render(self, latents: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
            return G.render(start).detach() + 0 * latents.sum()

    follows = rehearsal_share(G, obj, Projector(G, obj, weights, schedule, anchor=start[0]), start, targets, seed=0)
    frozen = Frozen()
    stuck = rehearsal_share(frozen, obj, Projector(frozen, obj, weights, schedule, anchor=start[0]), start, targets,
                            seed=0)
    assert follows < 0.5
    assert stuck == pytest.approx(1.0)


def _still_driver(G, obj: LandmarkObjective, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A driver that holds one generated face's points for ``frames`` frames, with its framing (centre, side)."""
    centre, side = np.array([[32.0, 36.0]]), np.array([60.0])
    with torch.no_grad():
        face = obj.points(to_unit(G.render(G.candidate_latents(1, torch.Generator().manual_seed(3)))),
                          torch.as_tensor(centre, dtype=torch.float32), torch.as_tensor(side, dtype=torch.float32))
    return face.numpy().repeat(frames, axis=0), centre, side


@pytest.mark.parametrize(("lips", "rehearsal_steps"), [(False, None), (True, None), (False, 7)])
def test_the_start_face_is_the_candidate_whose_rehearsal_went_furthest(models_dir: Path, monkeypatch, lips: bool,
                                                                       rehearsal_steps: int | None) -> None:
    G, mesh, obj = _dcgan_and_mesh(models_dir)
    cfg = dataclasses.replace(preset("free"), start_candidates=64, start_rehearsal=3,  # 16 steady, 8 present, 4 clear
                              start_presence=True, start_rehearse_lips=lips, start_rehearsal_steps=rehearsal_steps)
    driver, centre, side = _still_driver(G, obj, 3)
    driver[2, mesh.groups["inner_lip"], 1] += 1.5
    lowest = mesh.groups["inner_lip"][int(np.argmax(driver[0, mesh.groups["inner_lip"], 1]))]
    driver[1, lowest, 1] += 2.0  # the widest-open mouth, a smaller change of shape than frame 2's
    shares = [0.8, 0.3, 0.6]  # the second-best shape rehearses best, on every frame it rehearses
    frames: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []
    scored_on: set[tuple[str, ...]] = set()
    rehearsed: set[int] = set()

    def fake_share(generator, obj, projector, start, targets, seed):
        rehearsed.add(projector.schedule.steps)
        if not any(torch.equal(start, f) for f in seen):
            seen.append(start)
        scored_on.add(tuple(g for g, idx in obj.net.groups.items() if obj.point_weights[idx].sum() > 0))
        if not any(torch.equal(targets.points, f) for f in frames):
            frames.append(targets.points)
        return shares[next(i for i, f in enumerate(seen) if torch.equal(start, f))]

    monkeypatch.setattr(start_face, "rehearsal_share", fake_share)
    face = choose_start_face(cfg, G, obj, driver, 0, centre, side, torch.device("cpu"))
    assert len(seen) == 3
    assert torch.equal(face.latent, seen[1][0])
    assert scored_on == ({("outer_lip", "inner_lip")} if lips else {tuple(mesh.groups)})
    assert len(frames) == (2 * 3 if lips else 3)  # lips: each face rehearses two driving frames
    assert rehearsed == {rehearsal_steps or cfg.schedule.steps}  # a later frame's steps unless told otherwise
    with torch.no_grad():
        own = obj.points(to_unit(G.render(face.latent[None])), face.centre, face.side)[0]
    assert torch.allclose(face.points, own)


def test_the_start_face_depends_on_the_driver_not_on_the_runs_seed(models_dir: Path) -> None:
    G, mesh, obj = _dcgan_and_mesh(models_dir)
    cfg = dataclasses.replace(preset("free"), start_candidates=16, start_rehearsal=2, start_rehearsal_steps=2)
    driver, centre, side = _still_driver(G, obj, 2)
    driver[1, mesh.groups["inner_lip"], 1] += 1.5
    first, other = (choose_start_face(dataclasses.replace(cfg, seed=seed), G, obj, driver, 0, centre, side,
                                      torch.device("cpu")) for seed in (0, 7))
    assert torch.equal(first.latent, other.latent) and torch.equal(first.points, other.points)


def test_the_faces_compete_as_drawn_and_the_motion_is_laid_on_the_face_as_the_loss_reads_it(models_dir: Path) -> None:
    G, mesh, plain = _dcgan_and_mesh(models_dir)
    cfg = dataclasses.replace(preset("free"), start_candidates=16, start_rehearsal=2, start_rehearsal_steps=2,
                              landmarks=LandmarkConfig(net="mesh", jitter_count=0, gamma=2.0))
    squared = LandmarkObjective(mesh, cfg.landmarks)
    driver, centre, side = _still_driver(G, plain, 2)
    driver[1, mesh.groups["inner_lip"], 1] += 1.5
    as_drawn = choose_start_face(dataclasses.replace(cfg, landmarks=dataclasses.replace(cfg.landmarks, gamma=1.0)),
                                 G, plain, driver, 0, centre, side, torch.device("cpu"))
    read_squared = choose_start_face(cfg, G, squared, driver, 0, centre, side, torch.device("cpu"))
    assert torch.equal(as_drawn.latent, read_squared.latent)  # the same face competes and wins
    with torch.no_grad():
        face = to_unit(G.render(read_squared.latent[None]))
        assert torch.allclose(read_squared.points, squared.points(face, read_squared.centre, read_squared.side)[0])
    assert not torch.allclose(read_squared.points, as_drawn.points, atol=0.05)


def test_each_face_rehearses_with_the_identity_term_to_itself_as_the_run_will(models_dir: Path, monkeypatch) -> None:
    G, mesh, obj = _dcgan_and_mesh(models_dir)
    cfg = dataclasses.replace(preset("free"), start_candidates=64, start_rehearsal=3)
    assert cfg.loss.identity > 0 and cfg.start_rehearse_lips
    driver, centre, side = _still_driver(G, obj, 2)
    driver[1, mesh.groups["inner_lip"], 1] += 1.5
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def fake_share(generator, obj, projector, start, targets, seed):
        assert projector.identity is not None, "the rehearsal left out the run's identity term"
        assert torch.equal(targets.face68, face68(obj, targets.points))
        calls.append((start, projector.identity.reference))
        return 0.5

    monkeypatch.setattr(start_face, "rehearsal_share", fake_share)
    choose_start_face(cfg, G, obj, driver, 0, centre, side, torch.device("cpu"),
                      identity_net=IdentityNet(untrained_dlib_resnet("tiny")))
    faces: list[tuple[torch.Tensor, list[torch.Tensor]]] = []  # each face with the references it rehearsed with
    for start, reference in calls:
        same = [refs for f, refs in faces if torch.equal(f, start)]
        if same:
            same[0].append(reference)
        else:
            faces.append((start, [reference]))
    assert len(faces) == 3 and all(len(refs) == 2 for _, refs in faces)  # the most expressive and widest frames
    assert all(torch.equal(*refs) for _, refs in faces)
    firsts = [refs[0] for _, refs in faces]
    assert not torch.allclose(firsts[0], firsts[1]) and not torch.allclose(firsts[1], firsts[2])
