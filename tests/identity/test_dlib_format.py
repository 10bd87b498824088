"""dlib's DNN file format read without dlib: primitives, the real face-recognition file, broken and hostile files."""

from __future__ import annotations

import math
import time

import dlib_writer as w
import numpy as np
import pytest

from stylepuppet.errors import WeightsError
from stylepuppet.identity.dlib_format import FormatError, _Reader, parse_network, read_dlib_network
from stylepuppet.identity.dlib_resnet import shipped_model_path


def tiny_network(rng: np.random.Generator, relu_tag: str = "relu_") -> bytes:
    """con, affine, relu, tag, con, affine, add_prev, relu, global avg pool, fc (14² input)."""
    def conv(i, o, k):
        return rng.standard_normal((o, i, k, k)).astype(np.float32), rng.standard_normal(o).astype(np.float32)

    relu = w.string(relu_tag)
    return w.network(w.input_rgb(14), [
        w.con(*conv(3, 4, 3), stride=2, padding=0), w.affine(np.ones(4), np.zeros(4)), relu,
        None, w.con(*conv(4, 4, 3), stride=1, padding=1), w.affine(np.ones(4), np.zeros(4)), w.add_prev(), relu,
        w.pool("avg", 0, 1), w.fc(rng.standard_normal((4, 5)).astype(np.float32)),
    ])


@pytest.mark.parametrize("value", [0, 1, 2, 127, 255, 256, 65535, -1, -300, 2**40 + 7, -(2**62)])
def test_integers_decode_as_dlib_encodes_them(value: int) -> None:
    r = _Reader(w.integer(value))
    assert r.integer() == value and r.left == 0


def test_floats_decode_dlibs_bytes() -> None:
    # the face network's margin as the file stores it: mantissa 0xa3d70a, exponent −28
    assert _Reader(bytes.fromhex("030ad7a3811c")).scalar() == pytest.approx(0.04, rel=1e-7)
    for value in (1.0, -2.5, 3.0e-8, 122.782, 1.0e20):
        assert _Reader(w.scalar(value)).scalar() == float(np.float32(value))
    assert _Reader(w.integer(0) + w.integer(32000)).scalar() == math.inf
    assert math.isnan(_Reader(w.integer(0) + w.integer(32002)).scalar())


def test_primitives_refuse_bytes_dlib_never_writes() -> None:
    with pytest.raises(FormatError, match="does not start"):
        _Reader(bytes([0x31, 0])).integer()  # reserved bits set
    with pytest.raises(FormatError, match="does not start"):
        _Reader(bytes([0x05, 0, 0, 0, 0, 0])).int32("an int")  # 5 bytes for a 4-byte int
    with pytest.raises(FormatError, match="old text format"):
        _Reader(b"1.5 ").scalar()
    with pytest.raises(FormatError, match="a bool is"):
        _Reader(b"x").boolean("use_bias")


def test_reads_dlibs_face_recognition_network() -> None:
    net = read_dlib_network(shipped_model_path())
    kinds = [layer.kind for layer in net.layers]
    convs = [layer for layer in net.layers if layer.kind == "con"]
    # dlib-models: "a ResNet network with 29 conv layers"; 128-D output from 256 channels
    assert len(convs) == 29 and kinds.count("add_prev") == 14 and kinds.count("affine") == 29
    assert convs[0].tensors["weight"].shape == (32, 3, 7, 7) and convs[0].attrs["stride_y"] == 2
    assert net.layers[-1].kind == "fc" and net.layers[-1].tensors["weight"].shape == (128, 256)
    assert "bias" not in net.layers[-1].tensors
    assert net.input.attrs == pytest.approx({"avg_red": 122.782, "avg_green": 117.001, "avg_blue": 104.298,
                                             "rows": 150, "cols": 150}, rel=1e-6)
    assert net.loss.attrs == pytest.approx({"margin": 0.04, "distance_threshold": 0.6}, rel=1e-6)
    assert all(np.isfinite(t).all() for layer in net.layers for t in layer.tensors.values())


def test_round_trip_of_a_written_network() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    fc = rng.standard_normal((4, 5)).astype(np.float32)
    net = parse_network(w.network(w.input_rgb(9, (1.0, 2.0, 3.0)), [
        w.con(weight, bias, stride=1, padding=1, tag="con_4"), w.affine(np.full(4, 2.0), np.full(4, -1.0)),
        None, w.relu(), w.pool("max", 3, 2), w.add_prev(), w.pool("avg", 0, 1), w.fc(fc)]))
    assert [layer.kind for layer in net.layers] == ["con", "affine", "wrapper", "relu", "max_pool", "add_prev",
                                                    "avg_pool", "fc"]
    np.testing.assert_array_equal(net.layers[0].tensors["weight"], weight)
    np.testing.assert_array_equal(net.layers[0].tensors["bias"], bias)
    np.testing.assert_array_equal(net.layers[1].tensors["gamma"], 2.0)
    np.testing.assert_array_equal(net.layers[-1].tensors["weight"], fc.T)
    assert net.layers[4].attrs == {"rows": 3, "cols": 3, "stride_y": 2, "stride_x": 2, "padding_y": 0, "padding_x": 0}
    assert net.input.attrs["avg_blue"] == 3.0 and net.input.attrs["rows"] == 9


def test_unknown_layer_tag_is_named_in_one_line(tmp_path) -> None:
    path = tmp_path / "gelu.dat"
    path.write_bytes(tiny_network(np.random.default_rng(1), relu_tag="gelu_"))
    with pytest.raises(WeightsError) as info:
        read_dlib_network(path)
    message = str(info.value)
    assert "'gelu_'" in message and str(path) in message and "\n" not in message


def test_huge_announced_tensor_is_refused_before_allocating(tmp_path) -> None:
    path = tmp_path / "huge.dat"
    huge = (w.string("con_4") + w.integer(2) + w.integer(1) + w.integer(1) + w.integer(1 << 20)
            + w.integer(1 << 20) + b"")  # a params tensor of 2^40 floats (4 TiB), then nothing
    path.write_bytes(w.integer(1) + w.loss_metric() + w.integer(3) + w.input_rgb(9) + huge)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="more than the .* bytes left"):
        read_dlib_network(path)
    assert time.perf_counter() - start < 1.0


def test_every_truncation_and_corruption_fails_with_a_format_error() -> None:
    """read_dlib_network turns FormatError into a one-line WeightsError; nothing else may escape."""
    data = tiny_network(np.random.default_rng(2))
    parse_network(data)
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            parse_network(data[:cut])
    rng = np.random.default_rng(3)
    for _ in range(500):
        broken = bytearray(data)
        for at in rng.integers(0, len(data), size=3):
            broken[at] = rng.integers(0, 256)
        try:
            parse_network(bytes(broken))
        except FormatError as exc:
            assert "\n" not in str(exc)


def test_not_a_file_is_a_weights_error(tmp_path) -> None:
    (tmp_path / "empty.dat").write_bytes(b"")
    for path, reason in ((tmp_path / "empty.dat", "empty"), (tmp_path / "missing.dat", "cannot read"),
                         (tmp_path, "cannot read")):
        with pytest.raises(WeightsError, match=reason):
            read_dlib_network(path)
    (tmp_path / "text.dat").write_bytes(b"hello, this is not a network")
    with pytest.raises(WeightsError, match="not a dlib network"):
        read_dlib_network(tmp_path / "text.dat")
