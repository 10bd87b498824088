"""IdentityNet (chip + dlib's ResNet) against dlib's whole pipeline, and the identity distance as a loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylepuppet.identity import IdentityNet, identity_distance

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def identity_net() -> IdentityNet:
    return IdentityNet.load()


def image01(face) -> torch.Tensor:
    return torch.from_numpy(face.image).permute(2, 0, 1)[None].float() / 255


def landmarks(face, which: str = "shape68") -> torch.Tensor:
    return torch.from_numpy(face.points(getattr(face, which)))[None].float()


def by_label(faces, label: str):
    return next(f for f in faces if f.label == label)


@pytest.mark.parametrize("which", ["shape68", "shape5"])
def test_descriptor_is_dlibs_compute_face_descriptor(identity_net, real_faces, dlib_face_models, which) -> None:
    worst = 0.0
    for face in real_faces:
        reference = np.array(dlib_face_models["descriptor"].compute_face_descriptor(face.image, getattr(face, which)))
        with torch.no_grad():
            ours = identity_net.descriptor(image01(face), landmarks(face, which))[0].double().numpy()
        worst = max(worst, float(np.linalg.norm(ours - reference)))
    print(f"\nworst descriptor distance to dlib's own pipeline ({which}, {len(real_faces)} faces): {worst:.4f}")
    assert worst <= 0.03  # dlib's same-person line is 0.6; its own 8-jitter descriptor moves ~0.1


def test_same_person_line_on_real_faces(identity_net, real_faces) -> None:
    picks = [by_label(real_faces, name) for name in ("d0.mp4:0", "d0.mp4:40", "s5.jpg:0", "d18.mp4:60")]
    with torch.no_grad():
        d = torch.cat([identity_net.descriptor(image01(f), landmarks(f)) for f in picks])
    assert identity_net.same_person == pytest.approx(0.6)
    assert identity_distance(d[0], d[1]) < identity_net.same_person  # one speaker, two frames
    assert (identity_distance(d[:2, None], d[None, 2:]) > identity_net.same_person).all()  # other people
    torch.testing.assert_close(identity_distance(d[:, None], d[None]), torch.cdist(d, d), atol=1e-5, rtol=1e-5)


def test_batch_equals_one_by_one(identity_net, real_faces) -> None:
    faces = [f for f in real_faces if f.label.startswith("d0.mp4")]
    with torch.no_grad():
        batch = identity_net.descriptor(torch.cat([image01(f) for f in faces]),
                                        torch.cat([landmarks(f) for f in faces]))
        single = torch.cat([identity_net.descriptor(image01(f), landmarks(f)) for f in faces])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_jittered_mirrored_descriptor_moves_as_much_as_dlibs_own_jitter(identity_net, real_faces,
                                                                        dlib_face_models) -> None:
    face = by_label(real_faces, "d0.mp4:0")
    with torch.no_grad():
        plain = identity_net.descriptor(image01(face), landmarks(face))
        jittered = identity_net.descriptor(image01(face), landmarks(face), jitter=4,
                                           generator=torch.Generator().manual_seed(0), mirror=True)
    ours = float(identity_distance(plain, jittered)[0])
    encoder = dlib_face_models["descriptor"]
    theirs = np.linalg.norm(np.array(encoder.compute_face_descriptor(face.image, face.shape68, num_jitters=8))
                            - np.array(encoder.compute_face_descriptor(face.image, face.shape68)))
    assert 0.02 < ours < max(0.2, 2 * theirs)


def test_identity_distance_decreases_under_gradient_descent_on_the_image(identity_net, real_faces) -> None:
    """The loss term of issue 12 in miniature: pull one person's frame towards another's descriptor through
    jittered framings; dlib's own framing sees the distance fall."""
    source, target = by_label(real_faces, "d0.mp4:0"), by_label(real_faces, "s5.jpg:0")
    points = landmarks(source)
    with torch.no_grad():
        goal = identity_net.descriptor(image01(target), landmarks(target))
        before = float(identity_distance(identity_net.descriptor(image01(source), points), goal)[0])
    image = image01(source).requires_grad_(True)
    optimiser = torch.optim.Adam([image], lr=0.005)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss = identity_distance(identity_net.descriptor(image, points, jitter=2, generator=generator), goal).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = float(identity_distance(identity_net.descriptor(image.clamp(0, 1), points), goal)[0])
    print(f"\nidentity distance to another person: {before:.3f} before, {after:.3f} after 3 Adam steps on the pixels")
    assert after < before - 0.1, (before, after)
