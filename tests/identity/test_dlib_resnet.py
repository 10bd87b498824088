"""The torch port of dlib's face-recognition ResNet: wiring on a tiny written network, exactness against dlib."""

from __future__ import annotations

import dlib_writer as w
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylepuppet import weights
from stylepuppet.errors import WeightsError
from stylepuppet.identity.dlib_format import parse_network
from stylepuppet.identity.dlib_resnet import REGISTRY_NAME, DlibResNet, load_dlib_resnet, shipped_model_path

dlib = pytest.importorskip("dlib")

MEANS = (122.782, 117.001, 104.298)


def _arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def f(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    return {"stem_w": f(4, 3, 7, 7), "stem_b": f(4), "stem_g": f(4) + 1, "stem_beta": f(4),
            "r1_w": f(4, 4, 3, 3), "r1_b": f(4), "r1_g": f(4) + 1, "r1_beta": f(4),
            "r2_w": f(4, 4, 3, 3), "r2_b": f(4), "r2_g": f(4) + 1, "r2_beta": f(4),
            "d1_w": f(8, 4, 3, 3), "d1_b": f(8), "d1_g": f(8) + 1, "d1_beta": f(8),
            "d2_w": f(8, 8, 3, 3), "d2_b": f(8), "d2_g": f(8) + 1, "d2_beta": f(8),
            "fc": f(8, 6)}


def tiny_resnet_file(a: dict[str, np.ndarray]) -> bytes:
    """The face network's pattern at a small size: stem, one residual block, one down-sampling block, head."""
    return w.network(w.input_rgb(37, MEANS), [
        w.con(a["stem_w"], a["stem_b"], 2, 0), w.affine(a["stem_g"], a["stem_beta"]), w.relu(), w.pool("max", 3, 2),
        None, w.con(a["r1_w"], a["r1_b"], 1, 1), w.affine(a["r1_g"], a["r1_beta"]), w.relu(),
        w.con(a["r2_w"], a["r2_b"], 1, 1), w.affine(a["r2_g"], a["r2_beta"]), w.add_prev(), w.relu(),
        None, w.con(a["d1_w"], a["d1_b"], 2, 0), w.affine(a["d1_g"], a["d1_beta"]), w.relu(),
        w.con(a["d2_w"], a["d2_b"], 1, 1), w.affine(a["d2_g"], a["d2_beta"]), None, None, w.pool("avg", 2, 2),
        w.add_prev(), w.relu(),
        w.pool("avg", 0, 1), w.fc(a["fc"]),
    ])


def reference_forward(a: dict[str, np.ndarray], images01: torch.Tensor) -> torch.Tensor:
    """The same network written out by hand from dlib's layer definitions."""
    t = {k: torch.from_numpy(v) for k, v in a.items()}

    def conv_affine(x, name, stride, padding):
        y = F.conv2d(x, t[f"{name}_w"], t[f"{name}_b"], stride=stride, padding=padding)
        return y * t[f"{name}_g"].view(1, -1, 1, 1) + t[f"{name}_beta"].view(1, -1, 1, 1)

    x = (images01 * 255 - torch.tensor(MEANS).view(1, 3, 1, 1)) / 256
    x = F.max_pool2d(F.relu(conv_affine(x, "stem", 2, 0)), 3, 2)
    x = F.relu(x + conv_affine(F.relu(conv_affine(x, "r1", 1, 1)), "r2", 1, 1))
    body = conv_affine(F.relu(conv_affine(x, "d1", 2, 0)), "d2", 1, 1)
    shortcut = F.pad(F.avg_pool2d(x, 2, 2), (0, 0, 0, 0, 0, 4))  # 4 channels added to the first 4 of 8
    x = F.relu(body + shortcut)
    return x.mean(dim=(2, 3)) @ t["fc"]


def test_tiny_resnet_matches_the_hand_written_network() -> None:
    arrays = _arrays(np.random.default_rng(0))
    net = DlibResNet(parse_network(tiny_resnet_file(arrays))).double()
    images = torch.rand(2, 3, 37, 37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = reference_forward({k: v.astype(np.float64) for k, v in arrays.items()}, images)
    torch.testing.assert_close(net(images), expected, rtol=1e-10, atol=1e-10)


def test_residual_wiring_it_does_not_know_is_refused(tmp_path) -> None:
    a = _arrays(np.random.default_rng(1))
    path = tmp_path / "odd.dat"
    path.write_bytes(w.network(w.input_rgb(37, MEANS), [
        w.con(a["stem_w"], a["stem_b"], 2, 0), None, w.relu(), None, w.relu(), None, w.add_prev(),
        w.pool("avg", 0, 1), w.fc(a["fc"][:4])]))
    with pytest.raises(WeightsError, match="residual block at layer 1 is wired"):
        load_dlib_resnet(path)


def test_wrong_chip_size_is_a_clear_error() -> None:
    net = DlibResNet(parse_network(tiny_resnet_file(_arrays(np.random.default_rng(2)))))
    with pytest.raises(ValueError, match=r"\[N, 3, 37, 37\]"):
        net(torch.zeros(1, 3, 40, 40))


@pytest.fixture(scope="module")
def resnet() -> DlibResNet:
    return load_dlib_resnet()


def chip_tensor(chip: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255


def test_equals_dlibs_descriptor_on_real_face_chips(resnet, real_faces, dlib_face_models) -> None:
    chips = [dlib.get_face_chip(f.image, f.shape68, size=150, padding=0.25) for f in real_faces]
    reference = np.array([dlib_face_models["descriptor"].compute_face_descriptor(c) for c in chips])
    with torch.no_grad():
        got = resnet(torch.cat([chip_tensor(c) for c in chips])).double().numpy()
    worst = np.abs(got - reference).max()
    norms = np.linalg.norm(reference, axis=1)
    print(f"\nworst |torch − dlib| over {len(chips)} real chips × 128: {worst:.2e} "
          f"(descriptor norms {norms.min():.3f}–{norms.max():.3f})")
    assert len(chips) >= 10
    assert worst <= 1e-4


def test_is_differentiable_in_the_chip(resnet, real_faces) -> None:
    chip = chip_tensor(dlib.get_face_chip(real_faces[0].image, real_faces[0].shape68)).requires_grad_(True)
    resnet(chip).norm().backward()
    assert torch.isfinite(chip.grad).all() and chip.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in resnet.parameters())


def test_registry_entry_is_the_installed_file() -> None:
    entry = weights.lookup(REGISTRY_NAME)
    path = shipped_model_path()
    assert entry.kind == "identity" and entry.filename == path.name and "public domain" in entry.licence
    assert weights.published_mismatch(entry, weights.sha256_file(path), path.stat().st_size) is None


def test_registry_name_loads_the_installed_copy_offline(tmp_path, monkeypatch, resnet) -> None:
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))  # an empty cache: nothing to download from
    by_name = load_dlib_resnet(REGISTRY_NAME)
    chip = torch.rand(1, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(by_name(chip), resnet(chip), rtol=0, atol=0)
    assert not any(tmp_path.iterdir())
