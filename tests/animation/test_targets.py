"""The targets stage: the driver read sharp over jittered framings, free mode's start saved with the targets,
keep-identity's look quad and the identity term's chip points."""

from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from stylepuppet.animation import targets as stage
from stylepuppet.animation.look import LookLatent, look_face
from stylepuppet.animation.run import animate
from stylepuppet.animation.targets import Targets
from stylepuppet.config import resolve_config
from stylepuppet.errors import LookWarning
from stylepuppet.generators.loader import load_generator, load_latent_generator
from stylepuppet.generators.sampling import class_label, sample
from stylepuppet.landmarks.framing import jitter_framing
from stylepuppet.landmarks.mesh import IBUG68_FROM_MESH
from stylepuppet.landmarks.net import LandmarkOutput


class _CentreNet(torch.nn.Module):
    """Puts every point at the centre of its crop and records the crops it saw."""

    input_size = 16
    num_points = 3
    groups: ClassVar[dict[str, np.ndarray]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, crops: torch.Tensor):
        self.seen.append(crops)
        centre = (self.input_size - 1) / 2
        return LandmarkOutput(torch.full((crops.shape[0], self.num_points, 2), centre))

def test_driver_landmarks_are_read_sharp_and_returned_in_generator_pixels(media_dir, monkeypatch):
    sizes: list[int] = []
    real = stage.aligned_frames

    def spy(driving, quads, size, **kwargs):
        sizes.append(size)
        return real(driving, quads, size, **kwargs)

    monkeypatch.setattr(stage, "aligned_frames", spy)
    net = _CentreNet()
    quads = np.array([[[100, 100], [100, 400], [400, 400], [400, 100]]] * 2, dtype=np.float64)
    centres = np.array([[30.0, 33.0], [31.0, 34.0]], dtype=np.float32)
    sides = np.array([40.0, 42.0], dtype=np.float32)
    points = stage.driver_points(net, media_dir / "d0.mp4", 0, quads, centres, sides, 64, torch.device("cpu"))
    assert sizes == [stage.READ_SIZE]  # a 64² generator's targets are read at 256², not 64²
    k = stage.READ_SIZE / 64
    for t in range(2):  # each frame: the mean over its seeded jittered framings, back in generator pixels
        c, _ = jitter_framing(torch.as_tensor((centres[t:t + 1] + 0.5) * k - 0.5), torch.as_tensor(sides[t:t + 1] * k),
                              torch.Generator().manual_seed(t), stage.READ_SHIFT, stage.READ_SCALE,
                              stage.READ_FRAMINGS)
        expected = (c.mean(dim=0).numpy() + 0.5) / k - 0.5
        np.testing.assert_allclose(points[t], np.repeat(expected[None], 3, axis=0), atol=1e-4)
        assert np.abs(expected - centres[t]).max() > 1e-3  # the framings really were jittered
    assert len(net.seen) == 2 and net.seen[0].shape[0] == stage.READ_FRAMINGS

def test_free_mode_starts_from_the_best_candidate_saved_with_the_targets(media_dir, models_dir, tmp_path):
    cfg = resolve_config("free", None, {
        "network": str(models_dir / "digiface_dcgan64_G.pt"), "space": "w", "landmarks.net": "mesh",
        "landmarks.weights": str(models_dir / "face_landmark.tflite"), "start_candidates": 8, "max_frames": 2,
        "subframes": 1, "schedule.steps_first": 1, "schedule.steps": 1, "schedule.lr": 1e-6})
    out = tmp_path / "run"
    animate(cfg, media_dir / "d0.mp4", out, progress=False)
    targets = Targets.load(out / "targets.npz")
    generator = load_latent_generator(models_dir / "digiface_dcgan64_G.pt", "w")
    candidates = generator.candidate_latents(8, torch.Generator().manual_seed(0))
    assert targets.start is not None and any(np.array_equal(targets.start, c.numpy()) for c in candidates)
    with np.load(out / "latents.npz") as z:
        np.testing.assert_allclose(z["ws"][0], targets.start, atol=1e-4)  # one tiny step away from the start


def test_keep_identity_keeps_the_look_quad_and_the_identity_chip_points_and_starts_at_the_look(media_dir, models_dir,
                                                                                              tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    network = models_dir / "digiface_dcgan64_G.pt"
    look = tmp_path / "look.png"
    image = sample(load_generator(network), 1, class_label(0, None))
    Image.fromarray(image).resize((256, 256), Image.Resampling.BICUBIC).save(look)
    cfg = resolve_config("keep-identity", None, {
        "network": str(network), "space": "w", "look_loss": "msssim", "landmarks.net": "mesh",
        "landmarks.weights": str(models_dir / "face_landmark.tflite"), "loss.identity": 1.0, "max_frames": 2,
        "subframes": 1, "schedule.steps_first": 2, "schedule.steps": 1, "schedule.lr": 1e-6})
    out = tmp_path / "run"
    with pytest.warns(LookWarning, match="cannot draw the look's face"):  # two steps cannot
        animate(cfg, media_dir / "d0.mp4", out, look=look, progress=False)
    targets = Targets.load(out / "targets.npz")
    generator = load_latent_generator(network, "w")
    assert np.array_equal(targets.look_quad, look_face(look, cfg, generator).quad)
    assert np.array_equal(targets.faces68, targets.points[:, IBUG68_FROM_MESH])
    assert targets.base68.shape == (68, 2)
    projected = LookLatent.load(out / "look_latent.npz")
    with np.load(out / "latents.npz") as z:
        np.testing.assert_allclose(z["ws"][0], projected.latent.numpy(), atol=1e-4)  # frame 0 starts at the look
        assert np.isfinite(z["loss/identity"]).all()
