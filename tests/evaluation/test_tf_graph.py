"""The frozen-GraphDef reader and its torch interpreter, on tiny graphs encoded by the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graphdef_writer import DType, Shape, const, field_bytes, field_varint, graph, node, shape, tensor

from stylepuppet.errors import WeightsError
from stylepuppet.evaluation import tf_graph
from stylepuppet.evaluation.tf_graph import TFGraphModule, parse_graph_def, read_graph_def

RNG = np.random.default_rng(0)


def _placeholder(shape: tuple[int, ...]) -> bytes:
    return node("x", "Placeholder", dtype=DType(1), shape=Shape(shape))


def _run(data: bytes, x: np.ndarray, output: str) -> np.ndarray:
    module = TFGraphModule(parse_graph_def(data), "x", output)
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], same: bool):
    """TensorFlow's windows over NHWC ``x``, written out: for SAME the output has ceil(in / s)
    cells and the padding beyond the image goes mostly after (bottom/right). Yields (i, j, cells
    inside the image [N, n, C], their kernel offsets)."""
    _, h, w, _ = x.shape
    if same:
        oh, ow = -(-h // s[0]), -(-w // s[1])
        top = max((oh - 1) * s[0] + k[0] - h, 0) // 2
        left = max((ow - 1) * s[1] + k[1] - w, 0) // 2
    else:
        oh, ow, top, left = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1, 0, 0
    for i in range(oh):
        for j in range(ow):
            cells, offsets = [], []
            for a in range(k[0]):
                for b in range(k[1]):
                    y, z = i * s[0] - top + a, j * s[1] - left + b
                    if 0 <= y < h and 0 <= z < w:
                        cells.append(x[:, y, z])
                        offsets.append((a, b))
            yield i, j, np.stack(cells, 1), offsets, (oh, ow)


def _conv_reference(x, kernel, stride, same):
    out = None
    for i, j, cells, offsets, (oh, ow) in _windows(x, kernel.shape[:2], stride, same):
        if out is None:
            out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]), np.float64)
        for n, (a, b) in enumerate(offsets):
            out[:, i, j] += cells[:, n] @ kernel[a, b]
    return out


def _pool_reference(x, k, s, same, reduce):
    cells_out = list(_windows(x, k, s, same))
    oh, ow = cells_out[0][4]
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i, j, cells, _, _ in cells_out:
        out[:, i, j] = reduce(cells, axis=1)
    return out


@pytest.mark.parametrize("size, stride, padding", [((7, 6), 2, "SAME"), ((8, 5), 2, "SAME"), ((7, 7), 1, "VALID")])
def test_convolution_and_pools_follow_tensorflow_padding(size, stride, padding):
    x = RNG.standard_normal((1, *size, 3)).astype(np.float32)
    kernel = RNG.standard_normal((3, 3, 3, 4)).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    window = {"strides": [1, stride, stride, 1], "padding": padding, "data_format": "NHWC"}
    data = graph(
        _placeholder((1, *size, 3)), const("k", kernel), const("b", bias),
        node("conv", "Conv2D", ("x", "k"), dilations=[1, 1, 1, 1], **window),
        node("bias", "BiasAdd", ("conv", "b"), data_format="NHWC"), node("relu", "Relu", ("bias",)),
        node("max", "MaxPool", ("x",), ksize=[1, 3, 3, 1], **window),
        node("avg", "AvgPool", ("x",), ksize=[1, 2, 3, 1], **window),
    )
    same, s = padding == "SAME", (stride, stride)
    conv = np.maximum(_conv_reference(x, kernel, s, same) + bias, 0)
    np.testing.assert_allclose(_run(data, x, "relu"), conv, atol=1e-5)
    np.testing.assert_allclose(_run(data, x, "max"), _pool_reference(x, (3, 3), s, same, np.max), atol=1e-6)
    np.testing.assert_allclose(_run(data, x, "avg"), _pool_reference(x, (2, 3), s, same, np.mean), atol=1e-6)


def test_head_ops_match_their_formulas():
    """The ops of an embedding head: flatten, matmul, inference batch norm, concat, L2 normalisation."""
    x = RNG.standard_normal((1, 2, 2, 3)).astype(np.float32)
    weights = RNG.standard_normal((12, 5)).astype(np.float32)
    scale, offset = RNG.uniform(0.5, 2, 5).astype(np.float32), RNG.standard_normal(5).astype(np.float32)
    mean, var = RNG.standard_normal(5).astype(np.float32), RNG.uniform(0.5, 2, 5).astype(np.float32)
    data = graph(
        _placeholder((1, 2, 2, 3)),
        const("shape", np.array([1, -1], np.int32)), node("flat", "Reshape", ("x", "shape")),
        const("w", weights), node("mm", "MatMul", ("flat", "w"), transpose_a=False, transpose_b=False),
        const("shape4", np.array([-1, 1, 1, 5], np.int32)), node("r4", "Reshape", ("mm", "shape4")),
        const("scale", scale), const("offset", offset), const("mean", mean), const("var", var),
        node("bn", "FusedBatchNorm", ("r4", "scale", "offset", "mean", "var"), epsilon=0.001,
             is_training=False, data_format="NHWC"),
        const("back", np.array([1, 5], np.int64)), node("v", "Reshape", ("bn", "back")),
        const("axis", np.array(1, np.int32)), node("cat", "ConcatV2", ("v", "v", "axis"), N=2),
        node("sq", "Square", ("cat",)), const("red", np.array([1], np.int32)),
        node("sum", "Sum", ("sq", "red"), keep_dims=True), const("eps", np.array(1e-10, np.float32)),
        node("max", "Maximum", ("sum", "eps")), node("rs", "Rsqrt", ("max",)),
        node("norm", "Mul", ("cat", "rs")), node("out", "Identity", ("norm",)),
    )
    v = (x.reshape(1, -1) @ weights - mean) / np.sqrt(var + 0.001) * scale + offset
    cat = np.concatenate([v, v], 1)
    np.testing.assert_allclose(_run(data, x, "out"), cat / np.linalg.norm(cat), atol=1e-5)


def test_constants_decode_from_every_encoding():
    floats = RNG.standard_normal((2, 3)).astype(np.float32)
    ints = np.array([-3, 0, 7, -(2 ** 31)], np.int32)
    longs = np.array([-(2 ** 40), 5], np.int64)
    flags = np.array([True, False, True])
    data = graph(
        node("raw", "Const", value=floats), node("packed", "Const", value=tensor(floats, as_values=True)),
        node("filled", "Const", value=tensor(np.full((2, 2), 1.5, np.float32), fill=True)),
        node("ints", "Const", value=tensor(ints, as_values=True)),
        node("longs", "Const", value=tensor(longs, as_values=True)),
        node("flags", "Const", value=tensor(flags, as_values=True)),
        node("scalar", "Const", value=np.array(2.5, np.float32)),
    )
    values = {n.name: n.attrs["value"] for n in parse_graph_def(data)}
    np.testing.assert_array_equal(values["raw"], floats)
    np.testing.assert_array_equal(values["packed"], floats)
    np.testing.assert_array_equal(values["filled"], np.full((2, 2), 1.5, np.float32))
    np.testing.assert_array_equal(values["ints"], ints)
    np.testing.assert_array_equal(values["longs"], longs)
    np.testing.assert_array_equal(values["flags"], flags)
    assert values["scalar"].shape == () and values["scalar"] == 2.5


def test_attributes_decode():
    (n,) = parse_graph_def(graph(node("c", "Conv2D", ("a", "b:0", "^ctrl"), padding="SAME", strides=[1, 2, 2, 1],
                                      epsilon=0.5, is_training=False, T=DType(1), shape=Shape((1, -1, 3)))))
    assert n.inputs == ("a", "b:0")  # the control input only orders execution in TensorFlow
    assert n.attrs == {"padding": "SAME", "strides": [1, 2, 2, 1], "epsilon": 0.5, "is_training": False,
                       "T": 1, "shape": (1, -1, 3)}


def test_unknown_ops_on_the_path_are_refused_by_name():
    data = graph(_placeholder((1, 2)), node("sm", "Softmax", ("x",)), node("sw", "Switch", ("sm", "x")),
                 node("out", "Relu", ("sw",)), node("ok", "Relu", ("x",)))
    with pytest.raises(WeightsError, match=r"unsupported TensorFlow op\(s\): Softmax \(x1\), Switch \(x1\)"):
        TFGraphModule(parse_graph_def(data), "x", "out")
    # ops the chosen output does not depend on are never run, so they are not refused
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(_run(data, x, "ok"), [[0.0, 2.0]])


def _tensor_proto(dtype: int, dims: tuple[int, ...], values: bytes) -> bytes:
    return field_varint(1, dtype) + field_bytes(2, shape(dims)) + values


@pytest.mark.parametrize("data, message", [
    (b"\x0a\x05abc", "claims 5 bytes"),  # truncated node
    (b"\x0a\x02\x0b\x00", "wire type 3"),  # a group start
    (b"\x08" + b"\xff" * 12, "varint"),  # endless varint
    (graph(node("c", "Const", value=_tensor_proto(1, (10 ** 10, 1000), field_bytes(5, b"\0\0\x80?")))), "over the"),
    (graph(node("c", "Const", value=_tensor_proto(1, (3,), field_bytes(4, b"abcd")))), "holds 4 bytes"),
    (graph(node("c", "Const", value=_tensor_proto(3, (3,), field_bytes(7, b"\x01\x02")))), "lists 2 values"),
    (graph(node("c", "Const", value=_tensor_proto(7, (1,), b""))), "dtype 7"),
    (graph(node("c", "Const", value=_tensor_proto(1, (-2,), b""))), "negative shape"),
    (b"", "holds no nodes"),
])
def test_malformed_graphs_raise_one_line_errors(data, message):
    with pytest.raises(WeightsError, match=message):
        parse_graph_def(data)


def test_graph_wiring_errors():
    x = _placeholder((1, 2))
    with pytest.raises(WeightsError, match="no node defines"):
        TFGraphModule(parse_graph_def(graph(x, node("out", "Relu", ("missing",)))), "x", "out")
    with pytest.raises(WeightsError, match="cycle"):
        TFGraphModule(parse_graph_def(graph(x, node("a", "Add", ("x", "b")), node("b", "Relu", ("a",)))), "x", "b")
    with pytest.raises(WeightsError, match="no Placeholder named 'input'"):
        TFGraphModule(parse_graph_def(graph(x, node("out", "Relu", ("x",)))), "input", "out")
    with pytest.raises(WeightsError, match="output 1"):
        TFGraphModule(parse_graph_def(graph(x, node("out", "Relu", ("x:1",)))), "x", "out")


def test_training_mode_and_nchw_graphs_are_refused():
    x = _placeholder((1, 1, 1, 2))
    ones = const("one", np.ones(2, np.float32))
    bn = node("bn", "FusedBatchNorm", ("x", "one", "one", "one", "one"), is_training=True)
    with pytest.raises(WeightsError, match="training mode"):
        TFGraphModule(parse_graph_def(graph(x, ones, bn)), "x", "bn")
    nchw = node("b", "BiasAdd", ("x", "one"), data_format="NCHW")
    with pytest.raises(WeightsError, match="only NHWC"):
        TFGraphModule(parse_graph_def(graph(x, ones, nchw)), "x", "b")


def test_files_are_read_with_a_size_limit(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="not found"):
        read_graph_def(tmp_path / "absent.pb")
    path = tmp_path / "g.pb"
    path.write_bytes(graph(_placeholder((1, 2)), node("out", "Relu", ("x",))))
    assert [n.op for n in read_graph_def(path)] == ["Placeholder", "Relu"]
    monkeypatch.setattr(tf_graph, "MAX_GRAPH_BYTES", 8)
    with pytest.raises(WeightsError, match="larger than"):
        read_graph_def(path)
    path.write_bytes(b"\x0a\x05abc")
    monkeypatch.undo()
    with pytest.raises(WeightsError, match=f"{path}: not a readable TensorFlow GraphDef"):
        read_graph_def(path)
