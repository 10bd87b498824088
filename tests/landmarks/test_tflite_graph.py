"""The TFLite reader and its torch rebuild, checked against the LiteRT interpreter on crafted models."""

from __future__ import annotations

import contextlib
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tflite_writer import write_tflite

from stylepuppet.errors import WeightsError
from stylepuppet.landmarks import tflite_graph
from stylepuppet.landmarks.tflite_graph import (
    Graph,
    GraphBuilder,
    OpSpec,
    TensorSpec,
    TFLiteModule,
    load_graph,
    parse_tflite,
    read_model_bytes,
    same_padding,
)

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter


def interpret(data: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Reference outputs of a flatbuffer by the LiteRT interpreter (inputs NHWC)."""
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    for detail, value in zip(it.get_input_details(), inputs):
        it.set_tensor(detail["index"], value)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def run_torch(data: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    module = TFLiteModule(parse_tflite(data))
    with torch.no_grad():
        outs = module(*(tflite_graph.nhwc_to_nchw(torch.from_numpy(x)) for x in inputs))
    return [o.numpy() for o in outs]


def rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def test_same_padding_matches_hand_formula() -> None:
    for size in range(1, 20):
        for kernel in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                out = (size + stride - 1) // stride
                total = max((out - 1) * stride + kernel - size, 0)
                assert same_padding(size, kernel, stride) == (total // 2, total - total // 2)
    assert same_padding(192, 3, 2) == (0, 1)  # stride 2 on an even size: the extra pixel goes bottom/right
    assert same_padding(5, 3, 2) == (1, 1)
    assert same_padding(96, 3, 1) == (1, 1)
    assert same_padding(9, 3, 1, dilation=2) == (2, 2)


def test_stride2_same_conv_pads_bottom_right_like_the_interpreter(tmp_path) -> None:
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input((1, 8, 8, 2))
    kernel = rand(rng, 3, 3, 3, 2)  # OHWI
    bias = b.constant(np.zeros(3, np.float32))  # LiteRT wants a bias for float convolutions
    b.mark_output(b.op("CONV_2D", [x, b.constant(kernel), bias], padding="SAME", stride=(2, 2)))
    data = write_tflite(b.build())
    image = rand(rng, 1, 8, 8, 2)
    ref = interpret(data, [image])[0]
    got = run_torch(data, [image])[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)

    nchw = torch.from_numpy(image).permute(0, 3, 1, 2)
    weight = torch.from_numpy(kernel).permute(0, 3, 1, 2)
    by_hand = F.conv2d(F.pad(nchw, (0, 1, 0, 1)), weight, stride=2).permute(0, 2, 3, 1).numpy()
    symmetric = F.conv2d(nchw, weight, stride=2, padding=1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ref, by_hand, atol=1e-5)
    assert np.abs(ref - symmetric).max() > 1e-2  # torch's symmetric padding would be wrong


def mixed_graph(rng: np.random.Generator, scale: float = 1.0):
    """Every supported op and option: asymmetric SAME, VALID, dilation, depth multiplier, fused
    activations, -inf max-pool padding on an odd size, channel PAD, constant ADD, float16 weights.
    ``scale`` scales the weights (small ones keep the clamping activations out of saturation)."""

    def w(*shape: int) -> np.ndarray:
        return rand(rng, *shape, scale=scale)

    b = GraphBuilder()
    x = b.input((1, 11, 11, 3), "image")
    y = b.op("CONV_2D", [x, b.constant(w(4, 3, 3, 3)), b.constant(w(4))], padding="SAME",
             stride=(2, 2), activation="RELU6")
    y = b.op("PRELU", [y, b.constant(w(1, 1, 4) * 0.3)])
    half = b.constant(w(1, 3, 3, 8).astype(np.float16))
    kernel = b.op("DEQUANTIZE", [half])
    z = b.op("DEPTHWISE_CONV_2D", [y, kernel, b.constant(w(8))], padding="SAME", stride=(2, 2),
             depth_multiplier=2)
    pooled = b.op("MAX_POOL_2D", [y], padding="SAME", stride=(2, 2), filter=(2, 2))
    pooled = b.op("PAD", [pooled, b.constant(np.array([[0, 0], [0, 0], [0, 0], [0, 4]], np.int32))])
    s = b.op("ADD", [pooled, z], activation="RELU")
    s = b.op("ADD", [s, b.constant(w(8))])
    s = b.op("CONV_2D", [s, b.constant(w(6, 3, 3, 8)), b.constant(w(6))], padding="SAME",
             stride=(1, 1), dilation=(2, 2), activation="RELU")
    s = b.op("DEPTHWISE_CONV_2D", [s, b.constant(w(1, 2, 2, 6)), b.constant(w(6))],
             padding="VALID", stride=(1, 1))
    s = b.op("CONV_2D", [s, b.constant(w(5, 2, 2, 6)), b.constant(w(5))], padding="VALID",
             stride=(1, 1), activation="RELU_N1_TO_1")
    b.mark_output(s)
    flat = b.op("RESHAPE", [s, b.constant(np.array([1, -1], np.int32))], shape=(1, 5 * int(np.prod(b.shape(s)[1:3]))))
    b.mark_output(b.op("LOGISTIC", [flat]))
    return b.build()


def test_all_supported_ops_match_the_interpreter() -> None:
    rng = np.random.default_rng(1)
    graph = mixed_graph(rng, scale=0.2)
    # Every computed tensor is an output, so each op is compared on its own.
    graph.outputs = tuple(op.outputs[0] for op in graph.ops if op.kind != "DEQUANTIZE")
    data = write_tflite(graph)
    assert [op.kind for op in parse_tflite(data).ops] == [op.kind for op in graph.ops]
    for _ in range(3):
        image = rand(rng, 1, 11, 11, 3)
        ref = interpret(data, [image])
        got = run_torch(data, [image])
        assert [g.shape for g in got] == [r.shape for r in ref]
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
        assert (np.abs(ref[-3]) < 0.99).sum() >= 2  # the clamped output is not all saturated


def test_batches_and_gradients() -> None:
    module = TFLiteModule(mixed_graph(np.random.default_rng(2), scale=0.2))
    x = torch.rand(3, 3, 11, 11, requires_grad=True)
    batch = module(x)
    single = module(x[1:2])
    torch.testing.assert_close(batch[1][1:2], single[1], rtol=1e-5, atol=1e-6)
    batch[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_unknown_operators_are_named(tmp_path) -> None:
    b = GraphBuilder()
    x = b.input((1, 4, 4, 1))
    y = b.op("SIN", [x], shape=(1, 4, 4, 1))
    b.mark_output(b.op("CUSTOM:Landmarks2TransformMatrix", [y], shape=(1, 4, 4, 1)))
    path = tmp_path / "odd.tflite"
    path.write_bytes(write_tflite(b.build()))
    graph = load_graph(path)
    assert [op.kind for op in graph.ops] == ["SIN", "CUSTOM:Landmarks2TransformMatrix"]
    with pytest.raises(WeightsError, match=r"unsupported TFLite operator\(s\): "
                                           r"CUSTOM:Landmarks2TransformMatrix \(x1\), SIN \(x1\)"):
        TFLiteModule(graph)


def test_unsupported_details_are_refused() -> None:
    def single(kind: str, **options) -> GraphBuilder:
        b = GraphBuilder()
        x = b.input((1, 4, 4, 2))
        b.mark_output(b.op(kind, [x, b.constant(np.ones((2, 1, 1, 2), np.float32)), -1], **options))
        return b

    for activation in ("TANH", "SIGN_BIT"):
        with pytest.raises(WeightsError, match=f"CONV_2D with fused activation {activation}"):
            TFLiteModule(single("CONV_2D", padding="SAME", stride=(1, 1), activation=activation).build())

    conv = {"padding": "SAME", "stride": (1, 1), "dilation": (1, 1), "activation": "NONE"}
    quantised = Graph([TensorSpec("x", (1, 4, 4, 2), "FLOAT32"), TensorSpec("w", (2, 1, 1, 2), "INT8"),
                       TensorSpec("y", (1, 4, 4, 2), "FLOAT32")], {1: np.ones((2, 1, 1, 2), np.int8)},
                      [OpSpec("CONV_2D", (0, 1, -1), (2,), conv)], (0,), (2,))
    data = write_tflite(quantised)
    with pytest.raises(WeightsError, match="int8/uint8-quantised"):
        parse_tflite(data)

    b = GraphBuilder()
    x = b.input((1, 4, 4, 2))
    b.mark_output(b.op("DEQUANTIZE", [x]))
    with pytest.raises(WeightsError, match="DEQUANTIZE of FLOAT32 tensor"):
        TFLiteModule(b.build())


def test_bad_files_are_weights_errors(tmp_path, models_dir) -> None:
    real = (models_dir / "face_landmark.tflite").read_bytes()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(real[:5000])
    with pytest.raises(WeightsError, match="cut.tflite"):
        load_graph(truncated)
    text = tmp_path / "notes.tflite"
    text.write_text("hello, not a model")
    with pytest.raises(WeightsError, match="neither a TFLite model nor a MediaPipe .task bundle"):
        read_model_bytes(text)
    with pytest.raises(WeightsError, match="not found"):
        read_model_bytes(tmp_path / "missing.tflite")
    rng = np.random.default_rng(0)
    for trial in range(60):  # damaged downloads: only ever a WeightsError (or a clean parse)
        damaged = bytearray(real[:int(rng.integers(8, len(real)))] if trial % 2 else real)
        for where in rng.integers(8, min(len(damaged), 4000), size=20):
            damaged[where] = int(rng.integers(0, 256))
        with contextlib.suppress(WeightsError):
            parse_tflite(bytes(damaged))


def test_task_bundle_member_and_size_guard(tmp_path, models_dir, monkeypatch) -> None:
    real = (models_dir / "face_landmark.tflite").read_bytes()
    bundle = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("face_detector.tflite", b"unused")
        zf.writestr("face_landmarks_detector.tflite", real)
    assert read_model_bytes(bundle) == real

    damaged = bytearray(bundle.read_bytes())
    start = damaged.index(b"face_landmarks_detector.tflite") + 100  # inside the deflated data
    damaged[start:start + 64] = bytes(b ^ 0x55 for b in damaged[start:start + 64])
    (tmp_path / "damaged.task").write_bytes(bytes(damaged))
    with pytest.raises(WeightsError, match="damaged or unreadable"):
        read_model_bytes(tmp_path / "damaged.task")

    other = tmp_path / "other.task"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("face_detector.tflite", b"unused")
    holds = r"no 'face_landmarks_detector.tflite' \(it holds \['face_detector.tflite'\]\)"
    with pytest.raises(WeightsError, match=holds):
        read_model_bytes(other)

    monkeypatch.setattr(tflite_graph, "MAX_MODEL_BYTES", len(real) - 1)
    with pytest.raises(WeightsError, match="over the .* limit"):
        read_model_bytes(bundle)
