import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch

from stylepuppet.errors import UnsafePickleError, WeightsError
from stylepuppet.landmarks import fan
from stylepuppet.landmarks.fan import (
    FAN,
    argmax_points,
    heatmap_to_crop,
    load_fan,
    render_heatmaps,
    soft_argmax,
    untrained_fan,
)
from stylepuppet.landmarks.framing import crop_to_image

D = torch.float64


@pytest.fixture(scope="module")
def small_fan():
    torch.manual_seed(0)
    net = FAN(num_modules=1)
    # Non-trivial BatchNorm statistics, so a load that dropped them would show.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _save_official(state, folder: Path, legacy: bool = True, prefix: str | None = None) -> Path:
    """Save like face-alignment's release: a (legacy-format) torch file named 2DFAN4-<sha256 prefix>.pth.tar."""
    tmp = folder / "tmp.pth.tar"
    torch.save(state, tmp, _use_new_zipfile_serialization=not legacy)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"2DFAN4-{prefix or digest[:10]}.pth.tar"
    tmp.rename(path)
    return path


def test_layout_matches_face_alignment_2dfan4():
    net = FAN(4)
    state = net.state_dict()
    # face-alignment's FAN(4): 23,820,176 parameters, 1129 state-dict entries (incl. BatchNorm buffers).
    assert sum(p.numel() for p in net.parameters()) == 23_820_176
    assert len(state) == 1129
    expected = {
        "conv1.weight": (64, 3, 7, 7), "conv1.bias": (64,), "bn1.running_var": (64,),
        "conv2.conv1.weight": (64, 64, 3, 3), "conv2.conv2.weight": (32, 64, 3, 3),
        "conv2.conv3.weight": (32, 32, 3, 3), "conv2.downsample.0.weight": (64,),
        "conv2.downsample.2.weight": (128, 64, 1, 1), "conv4.downsample.2.weight": (256, 128, 1, 1),
        "m0.b1_4.bn1.weight": (256,), "m3.b2_plus_1.conv3.weight": (64, 64, 3, 3),
        "m2.b3_1.conv1.weight": (128, 256, 3, 3), "top_m_3.conv1.weight": (128, 256, 3, 3),
        "conv_last3.weight": (256, 256, 1, 1), "bn_end3.num_batches_tracked": (),
        "l3.weight": (68, 256, 1, 1), "bl2.weight": (256, 256, 1, 1), "al2.weight": (256, 68, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "bl3.weight" not in state and "al3.weight" not in state and "conv3.downsample.0.weight" not in state
    # The hourglass registers its blocks in face-alignment's recursive order.
    hg = [k.split(".")[1] for k in state if k.startswith("m0.") and k.endswith("conv1.weight")]
    assert hg == ["b1_4", "b2_4", "b1_3", "b2_3", "b1_2", "b2_2", "b1_1", "b2_1", "b2_plus_1", "b3_1", "b3_2",
                  "b3_3", "b3_4"]


def test_forward_shapes_and_points_follow_the_heat_maps(small_fan):
    crops = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        out = small_fan(crops)
    assert out.heatmaps.shape == (1, 68, 64, 64)
    assert out.points.shape == (1, 68, 2)
    torch.testing.assert_close(out.points, heatmap_to_crop(soft_argmax(out.heatmaps)))
    with pytest.raises(ValueError, match=r"\[N, 3, 256, 256\]"):
        small_fan(torch.rand(1, 3, 128, 128))


def test_stacks_feed_forward_and_the_last_is_the_prediction():
    torch.manual_seed(1)
    net = FAN(num_modules=2, width=32).eval()
    crops = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        stack = net.heatmap_stack(crops)
        out = net(crops)
    assert len(stack) == 2 and all(h.shape == (2, 68, 64, 64) for h in stack)
    assert torch.equal(out.heatmaps, stack[-1])
    assert not torch.equal(stack[0], stack[1])


def test_official_container_loads_strictly_and_checks_the_name_hash(small_fan, tmp_path):
    path = _save_official(small_fan.state_dict(), tmp_path)
    net = load_fan(path)
    assert not net.training
    crops = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(net(crops).heatmaps, small_fan(crops).heatmaps)
    bad = _save_official(small_fan.state_dict(), tmp_path, prefix="0123456789")
    with pytest.raises(WeightsError, match="does not start with 0123456789"):
        load_fan(bad)


def test_wrapped_state_dict_with_module_prefixes_loads(small_fan, tmp_path):
    state = {"state_dict": {f"module.{k}": v for k, v in small_fan.state_dict().items()}}
    path = tmp_path / "fan-checkpoint.pth"
    torch.save(state, path)
    net = load_fan(path)
    for key, value in small_fan.state_dict().items():
        assert torch.equal(net.state_dict()[key], value)


def test_loader_errors_are_one_line_weights_errors(small_fan, tmp_path):
    state = small_fan.state_dict()
    del state["l0.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match="does not match the FAN"):
        load_fan(tmp_path / "broken.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a FAN checkpoint"):
        load_fan(tmp_path / "other.pth")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch should-not-exist",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": _Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="FAN weights .* refused to load: it calls (posix|os).system") as info:
        load_fan(path)
    assert "weights_only" not in str(info.value)  # never torch's advice to turn the check off
    assert not (tmp_path / "should-not-exist").exists()


def test_registry_name_goes_through_the_verified_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path))
    # A file in the cache whose sha256 does not start with the hex in the registry file name.
    (tmp_path / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"not the real weights")
    with pytest.raises(WeightsError, match="11f355bf06"):
        load_fan("fan-2dfan4")


def test_soft_argmax_and_argmax_agree_with_rendered_points():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 68, 2, generator=g, dtype=D) * 50 + 7
    maps = render_heatmaps(pts)
    assert maps.shape == (3, 68, 64, 64)
    soft = soft_argmax(maps)
    hard = argmax_points(maps)
    assert (soft - pts).abs().max() < 0.02
    assert (hard - pts).abs().max() <= 0.25 + 1e-9  # quarter-pixel resolution
    assert (soft - hard).abs().max() <= 0.27
    # Amplitude and a constant background do not move the soft read-out (temperature is relative to the peak).
    torch.testing.assert_close(soft_argmax(0.3 * maps), soft, atol=1e-9, rtol=0)


def test_soft_argmax_is_differentiable_and_moves_with_the_peak():
    pts = torch.tensor([[[7.3, 8.6]]], dtype=D, requires_grad=True)
    maps = render_heatmaps(pts, size=16)
    read = soft_argmax(maps)
    read.sum().backward()
    # d(read-out)/d(point) is ~identity for a clean Gaussian: x moves with x, y with y.
    torch.testing.assert_close(pts.grad, torch.ones_like(pts), atol=0.05, rtol=0)
    heat = torch.rand(1, 2, 12, 12, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(soft_argmax, (heat,))


def test_argmax_read_out_equals_face_alignments_formula():
    # face-alignment: preds = idx + 1 ± 0.25 − 0.5 (1-based maximum, quarter shift), then the inverse of its
    # crop transform, image = centre + (preds / 64 − 0.5) · 200 · scale (before it truncates to integers).
    heat = torch.zeros(1, 2, 64, 64, dtype=D)
    heat[0, 0, 20, 30], heat[0, 0, 20, 31], heat[0, 0, 19, 30] = 1.0, 0.6, 0.2  # shift +x, −y
    heat[0, 1, 0, 5] = 1.0  # on the border: no shift
    centre = torch.tensor([[300.0, 220.0]], dtype=D)
    side = torch.tensor([350.0], dtype=D)
    ours = crop_to_image(heatmap_to_crop(argmax_points(heat)), centre, side, 256)
    fa = torch.tensor([[[30 + 1 + 0.25 - 0.5, 20 + 1 - 0.25 - 0.5], [5 + 1 - 0.5, 0 + 1 - 0.5]]], dtype=D)
    expected = centre[:, None] + (fa / 64 - 0.5) * side[:, None, None]
    torch.testing.assert_close(ours, expected)


def test_rendered_heat_map_round_trip_through_crop_coordinates():
    crop_pts = torch.tensor([[[101.0, 130.5], [40.25, 200.0]]], dtype=D)
    maps = render_heatmaps(fan.crop_to_heatmap(crop_pts))
    assert maps.amax() <= 1.0 and maps.amax() > 0.9
    torch.testing.assert_close(heatmap_to_crop(soft_argmax(maps)), crop_pts, atol=0.08, rtol=0)
    torch.testing.assert_close(fan.crop_to_heatmap(heatmap_to_crop(crop_pts)), crop_pts)


def test_framing_uses_face_alignment_constants():
    box = torch.tensor([[10.0, 20.0, 110.0, 150.0]], dtype=D)
    centre, side = FAN(num_modules=1, width=16).framing(box)
    scale = (100 + 130) / 195
    torch.testing.assert_close(centre, torch.tensor([[60.0, 85.0 - 0.12 * 130]], dtype=D))
    torch.testing.assert_close(side, torch.tensor([200 * scale], dtype=D))


def test_untrained_tiny_fan_is_small_and_in_eval_mode():
    net = untrained_fan("tiny")
    assert not net.training and net.num_modules == 1 and net.width == 64
    assert sum(p.numel() for p in net.parameters()) < 500_000
    with pytest.raises(ValueError):
        untrained_fan("huge")
