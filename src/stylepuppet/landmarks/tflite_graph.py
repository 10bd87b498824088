"""Run a TensorFlow Lite model as a differentiable PyTorch module, without TensorFlow.

The ``.tflite`` flatbuffer is read as data only (with the ``tflite`` parsing package): tensor
shapes, constant buffers and the list of operators. :class:`TFLiteModule` then rebuilds the graph
from plain torch ops, so gradients flow from the outputs back to the input pixels. Only the
operators the MediaPipe face-landmark models use are implemented; anything else is refused with
a :class:`~stylepuppet.errors.WeightsError` naming the operators, never approximated.

Layout: TFLite activations are NHWC; inside the module every 4-D activation is kept NCHW (the
torch layout), so 4-D graph inputs are given NCHW and 4-D outputs are returned NHWC as the file
declares them. Kernels are converted once: CONV_2D OHWI -> OIHW, DEPTHWISE_CONV_2D 1HWO -> O1HW.
TFLite's SAME padding puts the odd pixel of padding at the bottom/right (stride 2 on even
sizes), unlike torch's symmetric ``padding=``, so it is applied explicitly when asymmetric.
"""

from __future__ import annotations

import struct
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet import safe_zip
from stylepuppet.errors import WeightsError

#: Largest model (or bundle member) read into memory: the face-landmark models are 1-3 MB.
MAX_MODEL_BYTES = 256 * 1024 * 1024
#: Most elements a tensor of a graph may declare: the face-landmark models' largest activation has 0.6 M
#: (192² × 16); a damaged file declaring billions would otherwise be allocated at the first forward pass.
MAX_TENSOR_ELEMENTS = 1 << 26

#: The member of a MediaPipe ``face_landmarker.task`` bundle (a zip) that holds the landmark net.
TASK_LANDMARK_MEMBER = "face_landmarks_detector.tflite"

_FILE_IDENTIFIER = b"TFL3"
#: What the flatbuffers reader raises on a damaged buffer (offsets or lengths out of range).
_CORRUPT = (struct.error, IndexError, TypeError, ValueError, AttributeError, OverflowError)
_PADDING = {0: "SAME", 1: "VALID"}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT64": np.int64}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of the graph as the file declares it (shape with batch 1, NHWC for images)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class OpSpec:
    """One operator: its builtin name (``"CONV_2D"``, or ``"CUSTOM:<code>"``), tensor ids and options.

    An input id of -1 is an omitted optional input (e.g. a convolution without bias).
    """

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A TFLite subgraph as plain data: tensors, constant values, operators in execution order."""

    tensors: list[TensorSpec]
    constants: dict[int, np.ndarray]
    ops: list[OpSpec]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""


# ----------------------------------------------------------------------------------------- reading


def read_model_bytes(path: str | Path, member: str = TASK_LANDMARK_MEMBER) -> bytes:
    """The flatbuffer bytes of a ``.tflite`` file, or of ``member`` inside a zip bundle (``.task``).

    Sizes are bounded (:data:`MAX_MODEL_BYTES`) whatever a zip's headers claim, so a zip bomb or an
    absurd file fails with a WeightsError instead of filling memory.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    # A .tflite may carry a zip of metadata files appended; its own identifier decides first.
    if head[4:8] == _FILE_IDENTIFIER:
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise WeightsError(f"{path} is larger than {MAX_MODEL_BYTES >> 20} MiB; not a face-landmark model")
        return path.read_bytes()
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path} is neither a TFLite model nor a MediaPipe .task bundle (zip)")
    return _read_zip_member(path, member)


def _read_zip_member(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            if member not in zf.namelist():
                models = sorted(n for n in zf.namelist() if n.endswith(".tflite"))
                raise WeightsError(f"{path} has no {member!r} (it holds {models or 'no .tflite files'}); "
                                   f"give a MediaPipe face_landmarker.task or the .tflite itself")
            data = safe_zip.read_member(zf, member, str(path), limit=MAX_MODEL_BYTES)
    except safe_zip.ZIP_ERRORS as exc:
        raise WeightsError(f"{path} is a damaged or unreadable zip bundle ({exc}); download it again") from None
    if data[4:8] != _FILE_IDENTIFIER:
        raise WeightsError(f"{member} in {path} is not a TFLite flatbuffer")
    return data


def load_graph(path: str | Path, member: str = TASK_LANDMARK_MEMBER) -> Graph:
    """Parse the main subgraph of a ``.tflite`` file or ``.task`` bundle into a :class:`Graph`."""
    data = read_model_bytes(path, member)
    try:
        return parse_tflite(data)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


def parse_tflite(data: bytes) -> Graph:
    """Read subgraph 0 of a TFLite flatbuffer: names, shapes, types, constant values and operators.

    Nothing in the file is executed; a malformed buffer raises a WeightsError.
    """
    if data[4:8] != _FILE_IDENTIFIER:
        raise WeightsError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    try:
        return _parse(tflite, data)
    except _CORRUPT as exc:
        raise WeightsError(f"corrupt TFLite flatbuffer ({type(exc).__name__}: {exc})") from None


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _parse(tflite: Any, data: bytes) -> Graph:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise WeightsError("the model has no subgraph")
    graph = model.Subgraphs(0)
    op_names = _enum_names(tflite.BuiltinOperator)
    type_names = _enum_names(tflite.TensorType)

    tensors: list[TensorSpec] = []
    constants: dict[int, np.ndarray] = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype = type_names.get(t.Type(), f"type {t.Type()}")
        name = (t.Name() or b"").decode("utf-8", "replace")
        if t.Sparsity() is not None:
            raise WeightsError(f"tensor {name!r} is sparse; sparse TFLite models are not supported")
        tensors.append(TensorSpec(name, shape, dtype))
        raw = _buffer_bytes(model, t.Buffer(), data)
        if raw is not None:
            constants[i] = _constant(raw, tensors[-1])

    ops: list[OpSpec] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        kind = op_names.get(number, f"BUILTIN_{number}")
        if kind == "CUSTOM":
            kind = "CUSTOM:" + (code.CustomCode() or b"?").decode("utf-8", "replace")
        inputs = tuple(int(j) for j in op.InputsAsNumpy()) if op.InputsLength() else ()
        outputs = tuple(int(j) for j in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        ops.append(OpSpec(kind, inputs, outputs, _options(tflite, kind, op)))

    inputs = tuple(int(j) for j in graph.InputsAsNumpy())
    outputs = tuple(int(j) for j in graph.OutputsAsNumpy())
    description = (model.Description() or b"").decode("utf-8", "replace")
    return Graph(tensors, constants, ops, inputs, outputs, description)


def _buffer_bytes(model: Any, index: int, data: bytes) -> bytes | None:
    """The constant data of buffer ``index``, or None for an activation (empty buffer)."""
    if index <= 0 or index >= model.BuffersLength():
        return None
    buf = model.Buffers(index)
    if buf.DataLength():
        return buf.DataAsNumpy().tobytes()
    offset, size = buf.Offset(), buf.Size()
    if offset > 1 and size > 0:  # large models keep buffers after the flatbuffer
        if offset + size > len(data):
            raise WeightsError(f"buffer {index} points past the end of the file (truncated download?)")
        return data[offset:offset + size]
    return None


def _constant(raw: bytes, spec: TensorSpec) -> np.ndarray:
    np_type = _NUMPY_TYPES.get(spec.dtype)
    if np_type is None:
        kind = "int8/uint8-quantised" if spec.dtype in ("INT8", "UINT8", "INT16", "INT4") else spec.dtype
        raise WeightsError(f"tensor {spec.name!r} is {kind}; only float32 (and float16 weights) models are "
                           f"supported — use the float model")
    count = int(np.prod(spec.shape)) if spec.shape else 1
    arr = np.frombuffer(raw, dtype=np.dtype(np_type).newbyteorder("<"))
    if arr.size != count:
        raise WeightsError(f"tensor {spec.name!r} holds {arr.size} values for shape {list(spec.shape)}")
    return arr.reshape(spec.shape).astype(np_type)


def _options(tflite: Any, kind: str, op: Any) -> dict[str, Any]:
    """The options of the operators we implement, as plain values (unknown kinds get none)."""
    table = op.BuiltinOptions()

    def read(cls: type) -> Any:
        obj = cls()
        if table is not None:
            obj.Init(table.Bytes, table.Pos)
        return obj if table is not None else None

    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = read(tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        if o is None:
            raise WeightsError(f"{kind} without options")
        return {"padding": _PADDING.get(o.Padding(), f"padding {o.Padding()}"),
                "stride": (o.StrideH(), o.StrideW()), "dilation": (o.DilationHFactor(), o.DilationWFactor()),
                "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), str(o.FusedActivationFunction()))}
    if kind == "MAX_POOL_2D":
        o = read(tflite.Pool2DOptions)
        if o is None:
            raise WeightsError(f"{kind} without options")
        return {"padding": _PADDING.get(o.Padding(), f"padding {o.Padding()}"),
                "stride": (o.StrideH(), o.StrideW()), "filter": (o.FilterHeight(), o.FilterWidth()),
                "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), str(o.FusedActivationFunction()))}
    if kind == "ADD":
        o = read(tflite.AddOptions)
        return {"activation": "NONE" if o is None else
                _ACTIVATIONS.get(o.FusedActivationFunction(), str(o.FusedActivationFunction()))}
    if kind == "RESHAPE":
        o = read(tflite.ReshapeOptions)
        if o is not None and o.NewShapeLength():
            return {"new_shape": tuple(int(s) for s in o.NewShapeAsNumpy())}
    return {}


# ------------------------------------------------------------------------------------------- maths


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding (before, after) of one spatial axis: the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _relu_n1_to_1(x: Tensor) -> Tensor:
    return torch.clamp(x, -1.0, 1.0)


#: Fused activations TFLite's float kernels apply as a clamp. TANH and SIGN_BIT are refused: the
#: converter never fuses them and LiteRT's convolution kernels do not apply them consistently.
_ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor] | None] = {
    "NONE": None, "RELU": F.relu, "RELU6": F.relu6, "RELU_N1_TO_1": _relu_n1_to_1,
}


def _activation(kind: str, name: str) -> Callable[[Tensor], Tensor] | None:
    if name not in _ACTIVATION_FUNCTIONS:
        raise WeightsError(f"{kind} with fused activation {name} is not supported")
    return _ACTIVATION_FUNCTIONS[name]


def nhwc_constant_to_nchw(value: np.ndarray, rank: int) -> Tensor:
    """A constant broadcast against an NHWC activation of ``rank`` dims, laid out for its NCHW twin."""
    arr = np.asarray(value, dtype=np.float32)
    if rank != 4:
        return torch.from_numpy(arr.copy())
    if arr.ndim > 4:
        raise WeightsError(f"a {arr.ndim}-D constant cannot broadcast against a 4-D activation")
    arr = arr.reshape((1,) * (4 - arr.ndim) + arr.shape)  # numpy broadcasting aligns on the right
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def nhwc_to_nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x


def nchw_to_nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1) if x.ndim == 4 else x


# ------------------------------------------------------------------------------------- op modules


class _Conv(nn.Module):
    """CONV_2D / DEPTHWISE_CONV_2D with TFLite padding and fused activation."""

    def __init__(self, weight: Tensor, bias: Tensor | None, groups: int, options: Mapping[str, Any], kind: str):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.groups = groups
        self.stride = tuple(int(s) for s in options["stride"])
        self.dilation = tuple(int(d) for d in options["dilation"])
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise WeightsError(f"{kind} with stride {self.stride} / dilation {self.dilation} is invalid")
        self.same = _padding_mode(kind, options["padding"])
        self.act = _activation(kind, options["activation"])

    def forward(self, x: Tensor) -> Tensor:
        padding: tuple[int, int] = (0, 0)
        if self.same:
            kh, kw = self.weight.shape[-2:]
            ph = same_padding(x.shape[-2], kh, self.stride[0], self.dilation[0])
            pw = same_padding(x.shape[-1], kw, self.stride[1], self.dilation[1])
            if ph[0] == ph[1] and pw[0] == pw[1]:
                padding = (ph[0], pw[0])
            else:
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        y = F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return y if self.act is None else self.act(y)


class _MaxPool(nn.Module):
    def __init__(self, options: Mapping[str, Any]):
        super().__init__()
        self.kernel = tuple(int(k) for k in options["filter"])
        self.stride = tuple(int(s) for s in options["stride"])
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise WeightsError(f"MAX_POOL_2D with filter {self.kernel} / stride {self.stride} is invalid")
        self.same = _padding_mode("MAX_POOL_2D", options["padding"])
        self.act = _activation("MAX_POOL_2D", options["activation"])

    def forward(self, x: Tensor) -> Tensor:
        if self.same:
            ph = same_padding(x.shape[-2], self.kernel[0], self.stride[0])
            pw = same_padding(x.shape[-1], self.kernel[1], self.stride[1])
            if any(ph + pw):  # padded cells never win the max (TFLite ignores them)
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf"))
        y = F.max_pool2d(x, self.kernel, self.stride)
        return y if self.act is None else self.act(y)


class _PReLU(nn.Module):
    def __init__(self, alpha: Tensor):
        super().__init__()
        self.weight = nn.Parameter(alpha)
        self.per_channel = alpha.ndim == 4 and alpha.shape[0] == alpha.shape[2] == alpha.shape[3] == 1

    def forward(self, x: Tensor) -> Tensor:
        if self.per_channel and x.ndim == 4 and x.shape[1] == self.weight.shape[1]:
            return F.prelu(x, self.weight.reshape(-1))
        return torch.where(x >= 0, x, x * self.weight)


class _Add(nn.Module):
    """ADD of two activations, or of an activation and a constant (kept as a buffer)."""

    def __init__(self, constant: Tensor | None, options: Mapping[str, Any]):
        super().__init__()
        self.register_buffer("constant", constant)
        self.act = _activation("ADD", options["activation"])

    def forward(self, a: Tensor, b: Tensor | None = None) -> Tensor:
        y = a + (self.constant if b is None else b)
        return y if self.act is None else self.act(y)


class _Pad(nn.Module):
    """PAD with zeros; ``pads`` are (before, after) per NHWC dimension as in the file."""

    def __init__(self, pads: np.ndarray, rank: int):
        super().__init__()
        pads = np.asarray(pads, dtype=np.int64).reshape(-1, 2)
        if pads.shape[0] != rank or (pads < 0).any():
            raise WeightsError(f"PAD paddings {pads.tolist()} do not fit a {rank}-D tensor")
        if rank == 4:
            pads = pads[[0, 3, 1, 2]]  # NHWC -> NCHW order
        # F.pad wants (last before, last after, second-to-last before, ...).
        self.pads = tuple(int(p) for pair in pads[::-1] for p in pair)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.pads)


class _Reshape(nn.Module):
    """RESHAPE in NHWC order; the leading (batch) dimension follows the input's batch size."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        shape = list(self.shape)
        if shape and shape[0] in (1, -1):
            shape[0] = x.shape[0]
        return nhwc_to_nchw(nchw_to_nhwc(x).reshape(shape))


class _Sigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


def _padding_mode(kind: str, padding: str) -> bool:
    if padding not in ("SAME", "VALID"):
        raise WeightsError(f"{kind} with {padding} is not supported")
    return padding == "SAME"


# ------------------------------------------------------------------------------------------ shapes


def infer_shape(kind: str, shapes: list[tuple[int, ...] | None], values: list[np.ndarray | None],
                options: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The NHWC output shape of one operator from its inputs' shapes (None for an omitted input) and constant
    values (None where computed), by TFLite's rules; None for kinds it does not know. ValueError when the
    inputs do not fit together."""
    shapes = [tuple(v.shape) if v is not None else s for s, v in zip(shapes, values)]
    x = shapes[0]
    if x is None:
        raise ValueError("the first input is missing")
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"):
        if len(x) != 4:
            raise ValueError(f"a {len(x)}-D input")
        if kind == "MAX_POOL_2D":
            (kh, kw), channels = options["filter"], x[3]
        else:
            k = shapes[1] if len(shapes) > 1 else None
            if k is None or len(k) != 4:
                raise ValueError(f"kernel of shape {k}")
            kh, kw, channels = k[1], k[2], (k[0] if kind == "CONV_2D" else k[3])
        dh, dw = options.get("dilation", (1, 1))
        sh, sw = options["stride"]
        if min(sh, sw, dh, dw) < 1:
            raise ValueError(f"stride {(sh, sw)}, dilation {(dh, dw)}")
        if options["padding"] == "SAME":
            return x[0], -(-x[1] // sh), -(-x[2] // sw), channels
        h, w = (x[1] - (kh - 1) * dh - 1) // sh + 1, (x[2] - (kw - 1) * dw - 1) // sw + 1
        if h < 1 or w < 1:
            raise ValueError(f"a {kh}x{kw} window does not fit a {x[1]}x{x[2]} input")
        return x[0], h, w, channels
    if kind == "PAD":
        if len(values) < 2 or values[1] is None:
            raise ValueError("no constant paddings")
        pads = np.asarray(values[1]).reshape(-1, 2)
        if pads.shape[0] != len(x):
            raise ValueError(f"paddings {pads.tolist()} for a {len(x)}-D input")
        return tuple(int(s + a + b) for s, (a, b) in zip(x, pads))
    if kind == "ADD":
        if len(shapes) != 2 or shapes[1] is None:
            raise ValueError("ADD takes two inputs")
        return tuple(int(d) for d in np.broadcast_shapes(x, shapes[1]))
    if kind in ("PRELU", "LOGISTIC", "DEQUANTIZE"):
        return x
    if kind == "RESHAPE":
        new = [int(d) for d in options["new_shape"]]
        size = int(np.prod(x))
        if new.count(-1) == 1:
            known = int(np.prod([d for d in new if d != -1]))
            if known <= 0 or size % known:
                raise ValueError(f"{list(x)} cannot take the shape {new}")
            new[new.index(-1)] = size // known
        if any(d < 0 for d in new) or int(np.prod(new)) != size:
            raise ValueError(f"{list(x)} cannot take the shape {new}")
        return tuple(new)
    return None


def check_graph(graph: Graph) -> None:
    """Refuse (WeightsError) a graph that is not self-consistent: tensor ids out of range, operators without an
    input or output, an output computed twice, declared shapes that are negative or absurdly large."""
    count = len(graph.tensors)
    for spec in graph.tensors:
        if any(d < 0 for d in spec.shape) or int(np.prod(spec.shape, dtype=np.float64)) > MAX_TENSOR_ELEMENTS:
            raise WeightsError(f"tensor {spec.name!r} declares the shape {list(spec.shape)}; not a face-landmark "
                               "model (or a damaged file)")
    for where, ids in (("graph inputs", graph.inputs), ("graph outputs", graph.outputs)):
        if not ids or any(not 0 <= i < count for i in ids):
            raise WeightsError(f"the {where} {list(ids)} do not name tensors of the graph (it has {count})")
    written: set[int] = set(graph.inputs) | set(graph.constants)
    for op in graph.ops:
        if not op.inputs or not 0 <= op.inputs[0] < count or any(not -1 <= i < count for i in op.inputs):
            raise WeightsError(f"a {op.kind} operator reads tensors {list(op.inputs)}; the graph has {count}")
        if len(op.outputs) != 1 or not 0 <= op.outputs[0] < count:
            raise WeightsError(f"a {op.kind} operator writes tensors {list(op.outputs)}; one of the graph's "
                               f"{count} was expected")
        if op.outputs[0] in written:
            raise WeightsError(f"a {op.kind} operator writes {graph.tensors[op.outputs[0]].name!r}, which is "
                               "already an input, a constant or another operator's output")
        written.add(op.outputs[0])


def _check_output_shape(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray], module: nn.Module) -> None:
    """The operator's output must have the shape the file declares for it (RESHAPE: the one it reshapes to)."""
    options = {**op.options, "new_shape": module.shape} if isinstance(module, _Reshape) else op.options
    shapes = [graph.tensors[i].shape if i >= 0 else None for i in op.inputs]
    values = [consts.get(i) if i >= 0 else None for i in op.inputs]
    try:
        expected = infer_shape(op.kind, shapes, values, options)
    except ValueError as exc:
        raise WeightsError(f"{op.kind} inputs do not fit together ({exc}); a damaged file?") from None
    declared = graph.tensors[op.outputs[0]]
    if expected is not None and tuple(expected) != declared.shape:
        raise WeightsError(f"{op.kind} computes {list(expected)}, but the file declares {declared.name!r} as "
                           f"{list(declared.shape)}; a damaged file?")


# ---------------------------------------------------------------------------------------- builders

_Builder = Callable[[OpSpec, Graph, dict[int, np.ndarray]], tuple[nn.Module, list[int]]]


def _const(op: OpSpec, position: int, consts: dict[int, np.ndarray], what: str) -> np.ndarray:
    index = op.inputs[position] if position < len(op.inputs) else -1
    if index not in consts:
        raise WeightsError(f"{op.kind} needs a constant {what}; a computed one is not supported")
    return consts[index]


def _rank(graph: Graph, index: int) -> int:
    return len(graph.tensors[index].shape)


def _optional_bias(op: OpSpec, consts: dict[int, np.ndarray]) -> Tensor | None:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    return torch.from_numpy(np.asarray(_const(op, 2, consts, "bias"), dtype=np.float32).reshape(-1).copy())


def _build_conv(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    kernel = np.asarray(_const(op, 1, consts, "kernel"), dtype=np.float32)
    in_channels = graph.tensors[op.inputs[0]].shape[-1]
    if kernel.ndim != 4 or in_channels % kernel.shape[3]:
        raise WeightsError(f"CONV_2D kernel {list(kernel.shape)} does not fit {in_channels} input channels")
    weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(0, 3, 1, 2)))  # OHWI -> OIHW
    return _Conv(weight, _optional_bias(op, consts), in_channels // kernel.shape[3], op.options, op.kind), \
        [op.inputs[0]]


def _build_depthwise(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    kernel = np.asarray(_const(op, 1, consts, "kernel"), dtype=np.float32)
    in_channels = graph.tensors[op.inputs[0]].shape[-1]
    if kernel.ndim != 4 or kernel.shape[0] != 1 or kernel.shape[3] % in_channels:
        raise WeightsError(f"DEPTHWISE_CONV_2D kernel {list(kernel.shape)} does not fit {in_channels} channels")
    # 1HWO -> O1HW; output channel c*M + m reads input channel c in both layouts.
    weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)))
    return _Conv(weight, _optional_bias(op, consts), in_channels, op.options, op.kind), [op.inputs[0]]


def _build_prelu(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    alpha = nhwc_constant_to_nchw(_const(op, 1, consts, "alpha"), _rank(graph, op.inputs[0]))
    return _PReLU(alpha), [op.inputs[0]]


def _build_add(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    live = [i for i in op.inputs if i not in consts]
    fixed = [i for i in op.inputs if i in consts]
    if len(op.inputs) != 2 or not live:
        raise WeightsError("ADD needs two inputs, at least one of them computed")
    if len(live) == 2 and _rank(graph, live[0]) != _rank(graph, live[1]):
        raise WeightsError("ADD of activations of different ranks is not supported")
    constant = nhwc_constant_to_nchw(consts[fixed[0]], _rank(graph, live[0])) if fixed else None
    return _Add(constant, op.options), live


def _build_max_pool(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    if _rank(graph, op.inputs[0]) != 4:
        raise WeightsError("MAX_POOL_2D needs a 4-D input")
    return _MaxPool(op.options), [op.inputs[0]]


def _build_pad(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    return _Pad(_const(op, 1, consts, "paddings"), _rank(graph, op.inputs[0])), [op.inputs[0]]


def _build_reshape(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape = tuple(int(s) for s in np.asarray(_const(op, 1, consts, "shape")).reshape(-1))
    elif "new_shape" in op.options:
        shape = tuple(op.options["new_shape"])
    else:
        shape = graph.tensors[op.outputs[0]].shape
    return _Reshape(shape), [op.inputs[0]]


def _build_logistic(op: OpSpec, graph: Graph, consts: dict[int, np.ndarray]) -> tuple[nn.Module, list[int]]:
    return _Sigmoid(), [op.inputs[0]]


BUILDERS: dict[str, _Builder] = {
    "CONV_2D": _build_conv,
    "DEPTHWISE_CONV_2D": _build_depthwise,
    "PRELU": _build_prelu,
    "ADD": _build_add,
    "MAX_POOL_2D": _build_max_pool,
    "PAD": _build_pad,
    "RESHAPE": _build_reshape,
    "LOGISTIC": _build_logistic,
}
#: DEQUANTIZE is folded away at load time (float16 weights -> float32 constants).
SUPPORTED_OPS = (*BUILDERS, "DEQUANTIZE")


def fold_dequantize(graph: Graph) -> tuple[list[OpSpec], dict[int, np.ndarray]]:
    """Replace DEQUANTIZE of float16 constants by float32 constants; other ops are kept as they are."""
    consts = dict(graph.constants)
    kept = []
    for op in graph.ops:
        if op.kind != "DEQUANTIZE":
            kept.append(op)
            continue
        source = op.inputs[0]
        if source not in consts or consts[source].dtype != np.float16:
            spec = graph.tensors[source]
            raise WeightsError(f"DEQUANTIZE of {spec.dtype} tensor {spec.name!r} is not supported "
                               f"(only float16 weights can be dequantised)")
        consts[op.outputs[0]] = consts[source].astype(np.float32)
    return kept, consts


def check_supported(graph: Graph) -> None:
    """Raise a WeightsError naming every operator of ``graph`` that cannot be rebuilt in torch."""
    unknown = Counter(op.kind for op in graph.ops if op.kind not in SUPPORTED_OPS)
    if unknown:
        names = ", ".join(f"{kind} (x{n})" for kind, n in sorted(unknown.items()))
        raise WeightsError(f"unsupported TFLite operator(s): {names}; supported: {', '.join(SUPPORTED_OPS)}")


class TFLiteModule(nn.Module):
    """The graph rebuilt from torch ops: ``forward(*inputs)`` returns the graph outputs as a list.

    4-D inputs are NCHW (torch layout), any batch size; 4-D outputs come back NHWC with the file's
    shapes (batch first). Weights are ``nn.Parameter``s, so ``requires_grad_(False)`` freezes them.
    """

    def __init__(self, graph: Graph):
        super().__init__()
        check_graph(graph)
        check_supported(graph)
        ops, consts = fold_dequantize(graph)
        computed = set(graph.inputs).union(*(op.outputs for op in ops))
        for index, spec in enumerate(graph.tensors):
            if index in computed and index not in consts and spec.dtype != "FLOAT32":
                raise WeightsError(f"activation {spec.name!r} is {spec.dtype}; only float32 models run here")
        available = set(graph.inputs) | set(consts)
        layers, wiring = [], []
        for op in ops:
            module, live = BUILDERS[op.kind](op, graph, consts)
            missing = [graph.tensors[i].name for i in live if i not in available]
            if missing:
                raise WeightsError(f"{op.kind} reads {missing} before any operator computes it")
            _check_output_shape(op, graph, consts, module)
            layers.append(module)
            wiring.append((tuple(live), op.outputs[0]))
            available.add(op.outputs[0])
        absent = [graph.tensors[i].name for i in graph.outputs if i not in available]
        if absent:
            raise WeightsError(f"graph outputs {absent} are never computed")
        self.layers = nn.ModuleList(layers)
        self._wiring = wiring
        self._inputs = tuple(graph.inputs)
        self._outputs = tuple(graph.outputs)
        self._const_outputs = {i: torch.from_numpy(np.asarray(consts[i], dtype=np.float32))
                               for i in graph.outputs if i in consts and i not in graph.inputs}
        self.input_shapes = [graph.tensors[i].shape for i in graph.inputs]
        self.output_names = [graph.tensors[i].name for i in graph.outputs]
        self.output_shapes = [graph.tensors[i].shape for i in graph.outputs]
        self._last_use = self._last_uses()

    def _last_uses(self) -> list[tuple[int, ...]]:
        """For each step, the tensors no later step (nor the outputs) reads, to free them early."""
        last: dict[int, int] = {}
        for step, (live, _) in enumerate(self._wiring):
            for i in live:
                last[i] = step
        keep = set(self._outputs)
        frees: list[list[int]] = [[] for _ in self._wiring]
        for i, step in last.items():
            if i not in keep:
                frees[step].append(i)
        return [tuple(f) for f in frees]

    def forward(self, *inputs: Tensor) -> list[Tensor]:
        if len(inputs) != len(self._inputs):
            raise ValueError(f"the graph takes {len(self._inputs)} input(s), got {len(inputs)}")
        values: dict[int, Tensor] = dict(zip(self._inputs, inputs))
        for layer, (live, out), frees in zip(self.layers, self._wiring, self._last_use):
            values[out] = layer(*(values[i] for i in live))
            for i in frees:
                del values[i]
        outs = []
        for i in self._outputs:
            value = values[i] if i in values else self._const_outputs[i]
            outs.append(nchw_to_nhwc(value))
        return outs


class GraphBuilder:
    """Assemble a :class:`Graph` by hand (untrained stand-ins, tests), with TFLite's shape rules.

    Options take the parsed form (``padding="SAME"``, ``stride=(h, w)``, ...); activation defaults
    to NONE and dilation to 1. ``shape=`` gives the output shape of kinds it cannot infer.
    """

    def __init__(self) -> None:
        self.tensors: list[TensorSpec] = []
        self.constants: dict[int, np.ndarray] = {}
        self.ops: list[OpSpec] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    def _add(self, shape: tuple[int, ...], dtype: str, name: str) -> int:
        self.tensors.append(TensorSpec(name or f"t{len(self.tensors)}", tuple(int(s) for s in shape), dtype))
        return len(self.tensors) - 1

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape

    def input(self, shape: tuple[int, ...], name: str = "") -> int:
        index = self._add(shape, "FLOAT32", name)
        self.inputs.append(index)
        return index

    def constant(self, value: np.ndarray, name: str = "") -> int:
        value = np.asarray(value)
        dtype = {np.dtype(t): n for n, t in _NUMPY_TYPES.items()}.get(value.dtype)
        if dtype is None:
            raise ValueError(f"constants must be float32, float16, int32 or int64, got {value.dtype}")
        index = self._add(value.shape, dtype, name)
        self.constants[index] = value
        return index

    def op(self, kind: str, inputs: list[int], name: str = "", shape: tuple[int, ...] | None = None,
           **options: Any) -> int:
        opts: dict[str, Any] = dict(options)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "ADD"):
            opts.setdefault("activation", "NONE")
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts.setdefault("dilation", (1, 1))
        out_shape = self._infer(kind, inputs, opts) if shape is None else tuple(shape)
        out = self._add(out_shape, "FLOAT32", name)
        self.ops.append(OpSpec(kind, tuple(inputs), (out,), opts))
        return out

    def _infer(self, kind: str, inputs: list[int], opts: Mapping[str, Any]) -> tuple[int, ...]:
        shapes = [self.shape(i) if i >= 0 else None for i in inputs]
        shape = infer_shape(kind, shapes, [self.constants.get(i) for i in inputs], opts)
        if shape is None:
            raise ValueError(f"give the output shape of {kind} with shape=")
        return shape

    def mark_output(self, index: int) -> None:
        self.outputs.append(index)

    def build(self, description: str = "") -> Graph:
        return Graph(list(self.tensors), dict(self.constants), list(self.ops), tuple(self.inputs),
                     tuple(self.outputs), description)
