"""`stylepuppet project` and `animate --look-latent`: the look projected once, checked and reused."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from stylepuppet.animation.folder import LOCK
from stylepuppet.animation.look import LookLatent
from stylepuppet.cli import run
from stylepuppet.lock import holding
from stylepuppet.optim.projector import Projector

FAST = ["--untrained", "--untrained-size", "tiny", "--look-loss", "msssim", "--steps-first", "6", "--steps", "3",
        "--quiet"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLEPUPPET_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def projected(cache, media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("look")
    assert run(["project", str(media_dir / "s1.jpg"), *FAST, "--lambda-identity", "0.5", "-o", str(out)]) == 0
    return out


def test_project_writes_the_framed_look_the_reconstruction_the_latent_and_the_figures(projected):
    aligned = np.asarray(Image.open(projected / "look_aligned.png"))
    both = np.asarray(Image.open(projected / "look_reconstruction.png"))
    assert aligned.shape == (64, 64, 3) and both.shape == (64, 128, 3)
    assert np.array_equal(both[:, :64], aligned)
    figures = json.loads((projected / "look_projection.json").read_text())
    assert set(figures) == {"look", "identity", "look_quad"} and np.asarray(figures["look_quad"]).shape == (4, 2)
    latent = LookLatent.load(projected / "look_latent.npz")
    assert latent.latent.shape == (10, 32) and latent.space == "w+" and latent.noise


def test_animate_reuses_a_projection_given_with_look_latent(projected, media_dir, tmp_path, monkeypatch):
    calls = []
    project = Projector.project

    def spy(self, index, targets, prev=None, **kwargs):
        calls.append(kwargs.get("first"))
        return project(self, index, targets, prev, **kwargs)

    monkeypatch.setattr(Projector, "project", spy)
    args = ["animate", "--look", str(media_dir / "s1.jpg"), "--driving", str(media_dir / "d3.mp4"), "--max-frames",
            "2", "--subframes", "1", *FAST, "--lambda-identity", "0.5", "--look-latent",
            str(projected / "look_latent.npz"), "-o", str(tmp_path / "out")]
    assert run(args) == 0
    assert calls == [False, False]  # no projection of the look: two frames, noise left as projected
    with np.load(tmp_path / "out" / "latents.npz") as z:
        saved = LookLatent.load(projected / "look_latent.npz")
        assert all(np.array_equal(z[f"noise/{k}"], v) for k, v in saved.noise.items())
        assert np.isfinite(z["loss/identity"]).all()


def test_a_projection_of_another_look_is_refused_in_one_line(projected, media_dir, tmp_path, capsys):
    args = ["animate", "--look", str(media_dir / "s3.jpg"), "--driving", str(media_dir / "d3.mp4"), "--max-frames",
            "1", *FAST, "--look-latent", str(projected / "look_latent.npz"), "-o", str(tmp_path / "out")]
    assert run(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "projection of another look image" in err


def test_a_projection_into_a_folder_in_use_is_refused_in_one_line(media_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with holding(out / LOCK, "the output folder"):
        assert run(["project", str(media_dir / "s1.jpg"), *FAST, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and f"pid {os.getpid()}" in err
    assert not (out / "look_latent.npz").exists()


def test_the_frames_fidelity_weight_does_not_move_the_projection(projected, media_dir, tmp_path):
    """The frames' λ4 pulls to the look's latent; the projection's pull to its start candidate stays light, so
    a strong frame pull does not leave the look half drawn."""
    out = tmp_path / "pulled"
    assert run(["project", str(media_dir / "s1.jpg"), *FAST, "--lambda-identity", "0.5", "--lambda-fidelity", "3",
                "-o", str(out)]) == 0
    assert np.array_equal(LookLatent.load(out / "look_latent.npz").latent,
                          LookLatent.load(projected / "look_latent.npz").latent)
