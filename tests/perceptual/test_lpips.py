import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet.errors import UnsafePickleError, WeightsError
from stylepuppet.perceptual.lpips import LPIPS, feature_distance, load_lpips, untrained_lpips, vgg16_layer_indices
from stylepuppet.perceptual.torchscript_reader import ScriptObject, read_torchscript

TINY = (4, 8, 8, 16, 16)
#: TorchScript is how the file we read was made; torch deprecates making new ones, which the tests must do.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def _random_metric(seed: int = 0) -> LPIPS:
    torch.manual_seed(seed)
    metric = LPIPS(TINY).eval()
    with torch.no_grad():
        for w in metric.heads:
            w.uniform_(0, 1)
    return metric


def _convs(metric: LPIPS) -> list[tuple[Tensor, Tensor]]:
    return [(metric.vgg.features[i].weight.detach(), metric.vgg.features[i].bias.detach())
            for i in vgg16_layer_indices()[0]]


def reference_lpips(convs, heads, x, y):
    """LPIPS written out from the paper's definition (independent of the module under test)."""
    def feats(img):
        h = (img - SHIFT.to(img)) / SCALE.to(img)
        outs, k = [], 0
        for block, n in enumerate((2, 2, 3, 3, 3)):
            if block:
                h = F.max_pool2d(h, 2)
            for _ in range(n):
                w, b = convs[k]
                k += 1
                h = F.relu(F.conv2d(h, w, b, padding=1))
            outs.append(h)
        return outs

    total = 0
    for fx, fy, w in zip(feats(x), feats(y), heads):
        nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((nx - ny) ** 2, w.reshape(1, -1, 1, 1)).mean(dim=(2, 3))[:, 0]
    return total


def _images(seed=1, n=2, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# ---------------------------------------------------------------------------------------------- the metric


def test_lpips_is_zero_on_identical_symmetric_and_positive_otherwise():
    metric = _random_metric()
    x, y = _images(1), _images(2)
    with torch.no_grad():
        assert torch.all(metric(x, x) == 0)
        d_xy, d_yx = metric(x, y), metric(y, x)
    torch.testing.assert_close(d_xy, d_yx)
    assert torch.all(d_xy > 0)


def test_lpips_equals_the_reference_formula_and_the_folded_features():
    metric = _random_metric()
    x, y = _images(1), _images(2)
    with torch.no_grad():
        expected = reference_lpips(_convs(metric), [w.detach() for w in metric.heads], x, y)
        torch.testing.assert_close(metric(x, y), expected, rtol=1e-5, atol=1e-7)
        folded = feature_distance(metric.features(x), metric.features(y))
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-7)


def test_gradients_reach_the_image():
    metric = _random_metric().double()
    x = _images(1, n=1, size=16).double().requires_grad_(True)
    target = metric.features(_images(2, n=1, size=16).double()).detach()
    feature_distance(metric.features(x), target).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_large_images_are_area_downsampled_first():
    metric = LPIPS(TINY, max_size=16).eval()
    x, y = _images(1, size=32), _images(2, size=32)
    with torch.no_grad():
        torch.testing.assert_close(metric(x, y), metric(F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)))


def test_shape_errors():
    metric = _random_metric()
    with pytest.raises(ValueError, match="differ in shape"):
        metric(_images(1, size=32), _images(2, size=16))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        metric.features(torch.zeros(1, 1, 16, 16))


# ---------------------------------------------------------------------------------------------- (b) state dicts


def _torchvision_state(metric: LPIPS) -> dict[str, Tensor]:
    state = {f"features.{k}": v for k, v in metric.vgg.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 16)  # present in the real file, unused by LPIPS
    return state


def _heads_state(metric: LPIPS) -> dict[str, Tensor]:
    return {f"lin{k}.model.1.weight": w.detach().view(1, -1, 1, 1).clone() for k, w in enumerate(metric.heads)}


def _same(a: LPIPS, b: LPIPS) -> None:
    x, y = _images(3), _images(4)
    with torch.no_grad():
        torch.testing.assert_close(a(x, y), b(x, y))


def test_torchvision_vgg_plus_lpips_heads_load(tmp_path):
    metric = _random_metric()
    torch.save(_torchvision_state(metric), tmp_path / "vgg16-397923af.pth")
    torch.save(_heads_state(metric), tmp_path / "vgg.pth")
    loaded = load_lpips(tmp_path / "vgg16-397923af.pth", heads=tmp_path / "vgg.pth")
    assert not loaded.training and loaded.channels == TINY
    _same(loaded, metric)


def test_lpips_package_whole_model_state_dict_loads(tmp_path):
    metric = _random_metric()
    slices = {0: 1, 2: 1, 5: 2, 7: 2, 10: 3, 12: 3, 14: 3, 17: 4, 19: 4, 21: 4, 24: 5, 26: 5, 28: 5}
    state = {f"net.slice{slices[i]}.{i}.{p}": getattr(metric.vgg.features[i], p).detach() for i in slices
             for p in ("weight", "bias")}
    state.update(_heads_state(metric))
    state["scaling_layer.shift"] = SHIFT.clone()
    torch.save(state, tmp_path / "lpips_vgg.pth")
    _same(load_lpips(tmp_path / "lpips_vgg.pth"), metric)


def test_state_dict_errors_say_what_is_missing(tmp_path):
    metric = _random_metric()
    torch.save(_torchvision_state(metric), tmp_path / "vgg.pth")
    torch.save(_heads_state(metric), tmp_path / "heads.pth")
    with pytest.raises(WeightsError, match="no LPIPS heads"):
        load_lpips(tmp_path / "vgg.pth")
    with pytest.raises(WeightsError, match="holds only the LPIPS heads"):
        load_lpips(tmp_path / "heads.pth")
    negative = {k: -v for k, v in _heads_state(metric).items()}
    torch.save(negative, tmp_path / "neg.pth")
    with pytest.raises(WeightsError, match="negative"):
        load_lpips(tmp_path / "vgg.pth", heads=tmp_path / "neg.pth")


# ---------------------------------------------------------------------------------------------- (a) vgg16.pt


class _Layers(nn.Module):
    def __init__(self, ch: tuple[int, ...]) -> None:
        super().__init__()
        c_in, k = 3, 1
        for c, n in zip(ch, (2, 2, 3, 3, 3)):
            for _ in range(n):
                setattr(self, f"conv{k}", nn.Conv2d(c_in, c, 3, padding=1))
                c_in, k = c, k + 1
        self.fc1 = nn.Linear(ch[-1], 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 10)


def _fold(f: Tensor, w: Tensor) -> Tensor:
    f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
    return (f * w.sqrt()[None] / float(f.shape[2] * f.shape[3]) ** 0.5).flatten(1)


class NvidiaStyleVGG16(nn.Module):
    """Our reconstruction of vgg16.pt's interface (inferred from public code, see lpips.py): tensors
    ``layers.conv1..13``, ``layers.fc1..3``, ``lpips0..4``; called on images in [0, 255] as
    ``(x, resize_images=False, return_lpips=True)`` it returns the folded LPIPS features."""

    def __init__(self, ch: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = _Layers(ch)
        for k, c in enumerate((ch[0], ch[1], ch[2], ch[3], ch[4])):
            self.register_buffer(f"lpips{k}", torch.rand(c, 1, 1))

    def forward(self, x: Tensor, resize_images: bool = True, return_features: bool = False,
                return_lpips: bool = False) -> Tensor:
        if resize_images:
            x = F.interpolate(x, size=[224, 224], mode="area")
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        x = (x / 127.5 - 1 - shift) / scale
        L = self.layers
        f1 = F.relu(L.conv2(F.relu(L.conv1(x))))
        f2 = F.relu(L.conv4(F.relu(L.conv3(F.max_pool2d(f1, 2)))))
        f3 = F.relu(L.conv7(F.relu(L.conv6(F.relu(L.conv5(F.max_pool2d(f2, 2)))))))
        f4 = F.relu(L.conv10(F.relu(L.conv9(F.relu(L.conv8(F.max_pool2d(f3, 2)))))))
        f5 = F.relu(L.conv13(F.relu(L.conv12(F.relu(L.conv11(F.max_pool2d(f4, 2)))))))
        if return_lpips:
            return torch.cat([_fold(f1, self.lpips0), _fold(f2, self.lpips1), _fold(f3, self.lpips2),
                              _fold(f4, self.lpips3), _fold(f5, self.lpips4)], dim=1)
        h = F.relu(L.fc2(F.relu(L.fc1(F.adaptive_avg_pool2d(f5, 1).flatten(1)))))
        return h if return_features else L.fc3(h)


@pytest.fixture(scope="module")
def nvidia_archive(tmp_path_factory) -> tuple[Path, torch.jit.ScriptModule]:
    torch.manual_seed(5)
    scripted = torch.jit.script(NvidiaStyleVGG16(TINY).eval())
    path = tmp_path_factory.mktemp("nv") / "vgg16.pt"
    scripted.save(str(path))
    return path, scripted


def test_nvidia_archive_loads_and_computes_what_the_program_computes(nvidia_archive):
    path, scripted = nvidia_archive
    metric = load_lpips(path)
    x, y = _images(1), _images(2)
    with torch.no_grad():
        fx = scripted(x * 127.5 + 127.5, resize_images=False, return_lpips=True)
        fy = scripted(y * 127.5 + 127.5, resize_images=False, return_lpips=True)
        torch.testing.assert_close(metric.features(x), fx, rtol=1e-4, atol=1e-6)
        expected = (fx - fy).square().sum(dim=1)
        torch.testing.assert_close(metric(x, y), expected, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(feature_distance(metric.features(x), metric.features(y)), expected,
                                   rtol=1e-4, atol=1e-7)


def test_reader_exposes_tensors_objects_and_code_as_data(nvidia_archive):
    path, scripted = nvidia_archive
    archive = read_torchscript(path)
    assert isinstance(archive.root, ScriptObject) and archive.root.qualified_name.endswith("NvidiaStyleVGG16")
    tensors = archive.tensors()
    for name, value in scripted.state_dict().items():
        assert torch.equal(tensors[name], value), name
    assert any("return_lpips" in text for text in archive.code.values())


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """Copy a zip archive, replacing the members whose name ends with a key of ``replace``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_data_pickle_that_would_run_code_is_refused_unrun(nvidia_archive, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    _rewrite(nvidia_archive[0], evil, {"/data.pkl": pickle.dumps(_Exploit(marker), protocol=2)})
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        read_torchscript(evil)
    with pytest.raises(UnsafePickleError):
        load_lpips(evil)
    assert not marker.exists()


def test_the_program_text_is_never_run(nvidia_archive, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    payload = f"open({str(marker)!r}, 'w').write('x')\n".encode()
    with zipfile.ZipFile(nvidia_archive[0]) as zf:
        code_files = [n.split("/", 1)[1] for n in zf.namelist() if n.endswith(".py")]
    _rewrite(nvidia_archive[0], evil, dict.fromkeys(code_files, payload))
    metric = load_lpips(evil)  # the tensors are all the loader needs
    _same(metric, load_lpips(nvidia_archive[0]))
    assert not marker.exists()


class _WithSetstate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.ones(3)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[Tensor, bool]) -> None:
        self.w = state[0] * 2
        self.training = state[1]


def test_script_setstate_is_not_run(tmp_path):
    path = tmp_path / "setstate.pt"
    torch.jit.script(_WithSetstate()).save(str(path))
    assert torch.equal(torch.jit.load(str(path)).w, torch.full((3,), 2.0))  # what running the program does
    root = read_torchscript(path).root
    assert root.attributes == {} and torch.equal(root.state[0], torch.ones(3))  # the raw pickled state


def test_non_archives_and_foreign_layouts_are_weights_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a zip"):
        read_torchscript(tmp_path / "junk.pt")
    other = tmp_path / "other.pt"
    torch.jit.script(_WithSetstate()).save(str(other))
    with pytest.raises(WeightsError, match="not NVIDIA's LPIPS vgg16.pt layout"):
        load_lpips(other)


def test_untrained_stand_in_is_tiny_and_usable():
    torch.manual_seed(0)
    metric = untrained_lpips("tiny")
    assert not metric.training and metric.channels == (8, 16, 32, 32, 32)
    x, y = _images(1), _images(2)
    with torch.no_grad():
        assert torch.all(metric(x, y) > 0) and torch.all(metric(x, x) == 0)
    with pytest.raises(ValueError):
        untrained_lpips("huge")
