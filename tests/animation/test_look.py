"""The look before any frame: framed the way the generator frames faces, projected, saved and reused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from engine_stubs import TinyLatents
from PIL import Image

from stylepuppet.animation import look as look_module
from stylepuppet.animation.look import LookLatent, face_layout, layout_quad, look_face, warn_if_undrawable
from stylepuppet.config import AnimateConfig, preset
from stylepuppet.errors import ConfigError, LookWarning, MediaError
from stylepuppet.face.align import ffhq_quad, to_aligned
from stylepuppet.face.detect import DlibDetector, detect_image
from stylepuppet.generators.loader import load_generator, load_latent_generator
from stylepuppet.generators.sampling import class_label, sample
from stylepuppet.generators.stylegan2 import untrained_stylegan2
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents
from stylepuppet.landmarks.scheme import GROUPS
from stylepuppet.video import load_image

RIGID = np.concatenate([GROUPS[g] for g in ("nose_bridge", "lower_nose", "right_eye", "left_eye")])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def dcgan(models_dir):
    return load_latent_generator(models_dir / "digiface_dcgan64_G.pt", "w")


def test_the_layout_quad_crops_a_face_onto_the_layout(media_dir) -> None:
    points = detect_image(load_image(media_dir / "s1.jpg"), DlibDetector()).points
    angle, scale, shift = 0.2, 0.15, np.array([20.0, 31.0])  # the layout: the face turned, shrunk, moved
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    layout = points @ rot.T + shift
    quad = layout_quad(points, layout, 64)
    assert np.allclose(to_aligned(points, quad, 64), layout, atol=1e-6)  # a similarity: every point lands
    assert quad.shape == (4, 2)
    side = np.linalg.norm(quad[3] - quad[0])
    assert side == pytest.approx(64 / scale)


def test_ffhq_generators_frame_the_look_like_ffhq_without_measuring(cache, monkeypatch) -> None:
    gen = StyleGAN2Latents(untrained_stylegan2("tiny", 64), "w+")
    monkeypatch.setattr(look_module, "measure_face_layout", lambda *a: pytest.fail("measured an FFHQ generator"))
    assert face_layout(gen, "dlib") is None


def test_a_generator_without_faces_falls_back_to_ffhq_with_a_warning(cache) -> None:
    with pytest.warns(LookWarning, match="found faces in only 0%"):
        assert face_layout(TinyLatents("w"), "dlib") is None


def test_the_dcgans_layout_is_measured_once_then_read_from_the_cache(cache, dcgan, monkeypatch) -> None:
    layout = face_layout(dcgan, "dlib")
    eyes = layout[GROUPS["right_eye"]].mean(0), layout[GROUPS["left_eye"]].mean(0)
    mouth = layout[GROUPS["outer_lip"]].mean(0)
    # the DigiFace DCGAN draws larger, lower faces than FFHQ's alignment would: eyes 16 px apart at 64²
    assert 18 < np.linalg.norm(eyes[1] - eyes[0]) < 21 and 28 < eyes[0][1] < 32 and 50 < mouth[1] < 55
    monkeypatch.setattr(look_module, "measure_face_layout", lambda *a: pytest.fail("measured twice"))
    assert np.array_equal(face_layout(dcgan, "dlib"), layout)


def test_a_look_is_framed_the_way_the_dcgan_frames_faces(cache, dcgan, models_dir, tmp_path) -> None:
    image = sample(load_generator(models_dir / "digiface_dcgan64_G.pt"), 0, class_label(0, None))
    path = tmp_path / "look.png"
    Image.fromarray(image).resize((256, 256), Image.Resampling.BICUBIC).save(path)
    framed = look_face(path, preset("keep-identity"), dcgan)
    assert framed.image.shape == (64, 64, 3)
    layout = face_layout(dcgan, "dlib")
    off = np.linalg.norm(framed.points[RIGID] - layout[RIGID], axis=1).mean()
    ffhq = to_aligned(framed.points, ffhq_quad(framed.points), 64)  # what FFHQ's alignment would have made
    assert off < 1.0 < np.linalg.norm(ffhq[RIGID] - layout[RIGID], axis=1).mean()
    # the quad is in the look's pixels: cropping the look with it gives the framed look
    assert np.allclose(to_aligned(detect_image(load_image(path), DlibDetector()).points, framed.quad, 64),
                       framed.points, atol=1e-6)


def test_a_small_look_is_found_and_framed_as_its_upscaled_copy(cache, dcgan, models_dir, tmp_path) -> None:
    image = sample(load_generator(models_dir / "digiface_dcgan64_G.pt"), 0, class_label(0, None))
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(image).save(small)  # 64²: too small for dlib's detector as it is
    Image.fromarray(image).resize((256, 256), Image.Resampling.BICUBIC).save(large)
    assert not DlibDetector().detect(load_image(small))
    cfg = preset("keep-identity")
    framed, reference = look_face(small, cfg, dcgan), look_face(large, cfg, dcgan)
    assert framed.image.shape == (64, 64, 3)
    assert np.allclose(framed.quad, (reference.quad + 0.5) / 4 - 0.5, atol=1e-6)


LATENT = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))


def latent(**kw) -> LookLatent:
    fields = {"latent": LATENT, "noise": {"n8": np.ones((8, 8), np.float32)},
              "figures": {"look": 0.1, "identity": 0.2}, "network": "net.pt", "space": "w", "look_digest": "abc"}
    return LookLatent(**(fields | kw))


def test_a_look_latent_round_trips_and_refuses_another_run(tmp_path, monkeypatch) -> None:
    path = tmp_path / "look_latent.npz"
    latent().save(path)
    back = LookLatent.load(path)
    assert torch.equal(back.latent, LATENT)
    assert back.figures == {"look": 0.1, "identity": 0.2} and back.network == "net.pt"
    assert np.array_equal(back.noise["n8"], np.ones((8, 8)))
    monkeypatch.setattr(look_module, "content_digest", lambda p: "abc")
    cfg = AnimateConfig(network="net.pt", space="w")
    back.check(cfg, tmp_path / "look.png", path)
    with pytest.raises(ConfigError, match=r"another network \('net.pt' there, 'other.pt' here\)"):
        back.check(AnimateConfig(network="other.pt", space="w"), tmp_path / "look.png", path)
    monkeypatch.setattr(look_module, "content_digest", lambda p: "def")
    with pytest.raises(ConfigError, match="another look image"):
        back.check(cfg, tmp_path / "look.png", path)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(MediaError, match="cannot read the look latent"):
        LookLatent.load(tmp_path / "bad.npz")


def test_a_look_the_generator_cannot_draw_is_said_up_front() -> None:
    with pytest.warns(LookWarning, match="cannot draw the look's face: its best reconstruction is 0.70"):
        warn_if_undrawable(latent(figures={"look": 0.3, "identity": 0.7}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_undrawable(latent(figures={"look": 0.1, "identity": 0.3}))
