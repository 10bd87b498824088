"""Run a frozen TensorFlow GraphDef (``.pb``) as a torch module, without TensorFlow or protobuf.

The file is decoded as data with a small reader of the protobuf wire format (varints, fixed
32/64-bit values and length-delimited fields) and the field numbers of TensorFlow's public
``graph.proto``, ``node_def.proto``, ``attr_value.proto``, ``tensor.proto`` and
``tensor_shape.proto``. Nothing in the file is executed: :class:`TFGraphModule` interprets the
nodes an output depends on with plain torch ops, and refuses any op outside :data:`SUPPORTED_OPS`
with a :class:`~stylepuppet.errors.WeightsError` naming it.

Activations keep TensorFlow's NHWC layout, so every axis, shape and broadcast in the file means
what it says; convolutions and pools run on a permuted view (torch picks its channels-last
kernels for it). Only NHWC, float32 graphs in inference form (no training branches) are run.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylepuppet.errors import WeightsError
from stylepuppet.landmarks.tflite_graph import same_padding

#: Largest graph file read into memory.
MAX_GRAPH_BYTES = 512 * 1024 * 1024

#: Wire types of the protobuf encoding.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

#: TensorFlow's DataType enum (types.proto) -> numpy, for the types a frozen float graph holds.
_DTYPES: dict[int, np.dtype] = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"),
                                9: np.dtype("<i8"), 10: np.dtype("?")}
_DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 9: "int64", 10: "bool"}

# Field numbers, from TensorFlow's .proto files.
_GRAPH_NODE = 1
_NODE_NAME, _NODE_OP, _NODE_INPUT, _NODE_ATTR = 1, 2, 3, 5
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_ATTR_LIST, _ATTR_S, _ATTR_I, _ATTR_F, _ATTR_B, _ATTR_TYPE, _ATTR_SHAPE, _ATTR_TENSOR = 1, 2, 3, 4, 5, 6, 7, 8
_TENSOR_DTYPE, _TENSOR_SHAPE, _TENSOR_CONTENT = 1, 2, 4
#: TensorProto's repeated value fields, by dtype: (field number, element encoding).
_TENSOR_VALUES = {1: (5, "f"), 2: (6, "d"), 3: (7, "varint"), 9: (10, "varint"), 10: (11, "varint")}
_SHAPE_DIM, _SHAPE_UNKNOWN_RANK, _DIM_SIZE = 2, 3, 1


class _Truncated(Exception):
    """The buffer ends inside a field or holds an impossible encoding."""


@dataclass(frozen=True)
class NodeDef:
    """One node of a GraphDef: its name, op, data inputs (``"node"`` or ``"node:k"``) and attributes.

    Control inputs (``"^node"``) only order execution in TensorFlow and are dropped.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]


# ------------------------------------------------------------------------------------ wire format


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise _Truncated("a varint runs past the end of its field")


def _signed(value: int) -> int:
    """An int32/int64 field read as unsigned 64-bit, back to two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one message; lengths are checked."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32, _BYTES):
            if wire == _BYTES:
                size, pos = _varint(buf, pos)
            else:
                size = 8 if wire == _FIXED64 else 4
            if size > end - pos:
                raise _Truncated(f"field {number} claims {size} bytes, {end - pos} are left")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise _Truncated(f"field {number} has wire type {wire} (groups are not used by GraphDef)")
        yield number, wire, value


def _packed(values: list[tuple[int, Any]], element: str) -> list[Any]:
    """A repeated scalar field, packed (one length-delimited run) or not: ``element`` is a struct
    code ("f", "d") or "varint"."""
    out: list[Any] = []
    for wire, value in values:
        if element == "varint":
            if wire == _VARINT:
                out.append(_signed(value))
                continue
            if wire != _BYTES:
                raise _Truncated(f"wire type {wire} where varints were expected")
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos)
                out.append(_signed(v))
            continue
        size = struct.calcsize("<" + element)
        if wire == _BYTES and len(value) % size == 0:
            out.extend(struct.unpack(f"<{len(value) // size}{element}", value))
        elif wire == (_FIXED32 if size == 4 else _FIXED64):
            out.extend(struct.unpack("<" + element, value))
        else:
            raise _Truncated(f"a repeated {element!r} field has a bad length or wire type")
    return out


def _group(buf: memoryview) -> dict[int, list[tuple[int, Any]]]:
    """The fields of one message grouped by number, in file order."""
    grouped: dict[int, list[tuple[int, Any]]] = {}
    for number, wire, value in _fields(buf):
        grouped.setdefault(number, []).append((wire, value))
    return grouped


def _text(values: list[tuple[int, Any]] | None) -> str:
    return bytes(values[-1][1]).decode("utf-8", "replace") if values else ""


# ------------------------------------------------------------------------------------- messages


def _shape(buf: memoryview) -> tuple[int, ...] | None:
    """A TensorShapeProto: its dims (-1 where unknown), or None for an unknown rank."""
    fields = _group(buf)
    if any(v for _, v in fields.get(_SHAPE_UNKNOWN_RANK, [])):
        return None
    dims = []
    for _, dim in fields.get(_SHAPE_DIM, []):
        sizes = _group(dim).get(_DIM_SIZE)
        dims.append(_signed(sizes[-1][1]) if sizes else 0)
    return tuple(dims)


def _tensor(buf: memoryview) -> np.ndarray:
    """A TensorProto as a numpy array; its claimed size is checked before anything is allocated."""
    fields = _group(buf)
    dtype_code = fields[_TENSOR_DTYPE][-1][1] if _TENSOR_DTYPE in fields else 0
    if dtype_code not in _DTYPES:
        raise WeightsError(f"constant of TensorFlow dtype {dtype_code} is not supported "
                           f"(only {', '.join(_DTYPE_NAMES.values())})")
    dtype = _DTYPES[dtype_code]
    shape = _shape(fields[_TENSOR_SHAPE][-1][1]) if _TENSOR_SHAPE in fields else ()
    if shape is None or any(d < 0 for d in shape):
        raise _Truncated("a constant has an unknown or negative shape")
    count = int(np.prod(shape, dtype=np.float64))
    if count * dtype.itemsize > MAX_GRAPH_BYTES:
        raise _Truncated(f"a constant claims shape {shape}, over the {MAX_GRAPH_BYTES >> 20} MiB limit")
    if _TENSOR_CONTENT in fields:
        content = fields[_TENSOR_CONTENT][-1][1]
        if len(content) != count * dtype.itemsize:
            raise _Truncated(f"a constant of shape {shape} holds {len(content)} bytes of data")
        return np.frombuffer(content, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    number, element = _TENSOR_VALUES[dtype_code]
    values = _packed(fields.get(number, []), element)
    if len(values) == count:
        return np.array(values, dtype=dtype).reshape(shape)
    if len(values) <= 1:  # TensorFlow's rule: one value fills the shape, none means zeros
        return np.full(shape, values[0] if values else 0, dtype=dtype)
    raise _Truncated(f"a constant of shape {shape} lists {len(values)} values")


def _attr(buf: memoryview) -> Any:
    """An AttrValue as a Python value: str, int, float, bool, dtype code, shape, array or list.

    Kinds no supported op reads (functions, placeholders) come back as None.
    """
    for number, _, value in _fields(buf):
        if number == _ATTR_S:
            return bytes(value).decode("utf-8", "replace")
        if number in (_ATTR_I, _ATTR_TYPE):
            return _signed(value)
        if number == _ATTR_B:
            return bool(value)
        if number == _ATTR_F:
            return struct.unpack("<f", value)[0]
        if number == _ATTR_SHAPE:
            return _shape(value)
        if number == _ATTR_TENSOR:
            return _tensor(value)
        if number == _ATTR_LIST:
            items = _group(value)
            return ([bytes(v).decode("utf-8", "replace") for _, v in items.get(_ATTR_S, [])]
                    + _packed(items.get(_ATTR_I, []), "varint") + _packed(items.get(_ATTR_F, []), "f"))
    return None


def _node(buf: memoryview) -> NodeDef:
    fields = _group(buf)
    attrs: dict[str, Any] = {}
    for _, entry in fields.get(_NODE_ATTR, []):
        parts = _group(entry)
        attrs[_text(parts.get(_ENTRY_KEY))] = _attr(parts[_ENTRY_VALUE][-1][1]) if _ENTRY_VALUE in parts else None
    inputs = tuple(t for t in (bytes(v).decode("utf-8", "replace") for _, v in fields.get(_NODE_INPUT, []))
                   if not t.startswith("^"))
    return NodeDef(_text(fields.get(_NODE_NAME)), _text(fields.get(_NODE_OP)), inputs, attrs)


def parse_graph_def(data: bytes) -> list[NodeDef]:
    """The nodes of a serialised GraphDef, in file order; a malformed buffer raises a WeightsError."""
    view = memoryview(data)
    try:
        nodes = [_node(value) for number, wire, value in _fields(view) if number == _GRAPH_NODE and wire == _BYTES]
    except (_Truncated, KeyError, struct.error) as exc:
        raise WeightsError(f"not a readable TensorFlow GraphDef ({exc or type(exc).__name__})") from None
    if not nodes:
        raise WeightsError("not a TensorFlow GraphDef: it holds no nodes")
    return nodes


def read_graph_def(path: str | Path) -> list[NodeDef]:
    """The nodes of a frozen GraphDef file (``.pb``), read as data with a size limit."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"graph file not found: {path}")
    if path.stat().st_size > MAX_GRAPH_BYTES:
        raise WeightsError(f"{path} is larger than {MAX_GRAPH_BYTES >> 20} MiB; refusing to read it")
    try:
        return parse_graph_def(path.read_bytes())
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------- ops


def _nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def _window(node: NodeDef, key: str) -> tuple[int, int]:
    """The spatial (h, w) entries of an NHWC attribute such as ``strides`` or ``ksize``."""
    values = node.attrs.get(key, [1, 1, 1, 1])
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise WeightsError(f"{node.op} {node.name!r}: {key}={values} is not a spatial NHWC window")
    return int(values[1]), int(values[2])


def _check_layout(node: NodeDef) -> None:
    if node.attrs.get("data_format", "NHWC") != "NHWC":
        raise WeightsError(f"{node.op} {node.name!r} uses {node.attrs['data_format']}; only NHWC graphs run here")


def _padding(node: NodeDef, x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) of TensorFlow's SAME or VALID padding on NHWC ``x``."""
    mode = node.attrs.get("padding")
    if mode == "VALID":
        return 0, 0, 0, 0
    if mode != "SAME":
        raise WeightsError(f"{node.op} {node.name!r}: padding {mode!r} is not supported")
    top, bottom = same_padding(x.shape[1], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[2], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def _conv2d(node: NodeDef) -> Callable[[Tensor, Tensor], Tensor]:
    _check_layout(node)
    stride, dilation = _window(node, "strides"), _window(node, "dilations")

    def run(x: Tensor, kernel: Tensor) -> Tensor:  # kernel HWIO
        pads = _padding(node, x, (kernel.shape[0], kernel.shape[1]), stride, dilation)
        weight = kernel.permute(3, 2, 0, 1)
        y = F.conv2d(F.pad(_nchw(x), pads), weight, stride=stride, dilation=dilation)
        return _nhwc(y)

    return run


def _max_pool(node: NodeDef) -> Callable[[Tensor], Tensor]:
    _check_layout(node)
    kernel, stride = _window(node, "ksize"), _window(node, "strides")

    def run(x: Tensor) -> Tensor:
        pads = _padding(node, x, kernel, stride)  # padded cells never win the max
        return _nhwc(F.max_pool2d(F.pad(_nchw(x), pads, value=float("-inf")), kernel, stride))

    return run


def _avg_pool(node: NodeDef) -> Callable[[Tensor], Tensor]:
    _check_layout(node)
    kernel, stride = _window(node, "ksize"), _window(node, "strides")

    def run(x: Tensor) -> Tensor:
        pads = _padding(node, x, kernel, stride)
        total = F.avg_pool2d(F.pad(_nchw(x), pads), kernel, stride, divisor_override=1)
        # TensorFlow averages over the cells inside the image only.
        cells = F.avg_pool2d(F.pad(torch.ones_like(_nchw(x[:1, :, :, :1])), pads), kernel, stride, divisor_override=1)
        return _nhwc(total / cells)

    return run


def _bias_add(node: NodeDef) -> Callable[[Tensor, Tensor], Tensor]:
    _check_layout(node)
    return lambda x, b: x + b


def _concat(node: NodeDef) -> Callable[..., Tensor]:
    return lambda *xs: torch.cat(xs[:-1], dim=int(xs[-1]))


def _reshape(node: NodeDef) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, shape: x.reshape([int(s) for s in shape.tolist()])


def _mat_mul(node: NodeDef) -> Callable[[Tensor, Tensor], Tensor]:
    ta, tb = bool(node.attrs.get("transpose_a")), bool(node.attrs.get("transpose_b"))
    return lambda a, b: (a.T if ta else a) @ (b.T if tb else b)


def _fused_batch_norm(node: NodeDef) -> Callable[..., Tensor]:
    _check_layout(node)
    if node.attrs.get("is_training", True):
        raise WeightsError(f"FusedBatchNorm {node.name!r} is in training mode; freeze the graph for inference")
    eps = float(node.attrs.get("epsilon", 1e-4))
    return lambda x, scale, offset, mean, var: (x - mean) * torch.rsqrt(var + eps) * scale + offset


def _sum(node: NodeDef) -> Callable[[Tensor, Tensor], Tensor]:
    keep = bool(node.attrs.get("keep_dims"))
    return lambda x, axes: x.sum(dim=[int(a) for a in axes.reshape(-1).tolist()], keepdim=keep)


def _elementwise(fn: Callable[..., Tensor]) -> Callable[[NodeDef], Callable[..., Tensor]]:
    return lambda node: fn


#: TensorFlow op -> builder of a torch function of the node's inputs (in the file's order).
OPS: dict[str, Callable[[NodeDef], Callable[..., Tensor]]] = {
    "Conv2D": _conv2d, "BiasAdd": _bias_add, "MaxPool": _max_pool, "AvgPool": _avg_pool,
    "ConcatV2": _concat, "Reshape": _reshape, "MatMul": _mat_mul, "FusedBatchNorm": _fused_batch_norm,
    "Sum": _sum, "Relu": _elementwise(F.relu), "Add": _elementwise(torch.add), "AddV2": _elementwise(torch.add),
    "Mul": _elementwise(torch.mul), "Maximum": _elementwise(torch.maximum), "Square": _elementwise(torch.square),
    "Rsqrt": _elementwise(torch.rsqrt), "Identity": _elementwise(lambda x: x),
}
SUPPORTED_OPS = ("Const", "Placeholder", *OPS)


def _source(tensor: str) -> str:
    """The node that produces ``"node"`` / ``"node:0"``; other outputs than 0 are refused."""
    name, _, index = tensor.partition(":")
    if index not in ("", "0"):
        raise WeightsError(f"input {tensor!r} reads output {index} of a node; no supported op has several")
    return name


def _needed(nodes: Mapping[str, NodeDef], output: str) -> list[NodeDef]:
    """The nodes ``output`` depends on, each after its inputs (depth-first, without recursion)."""
    order: list[NodeDef] = []
    state: dict[str, bool] = {}  # False while on the stack, True once placed
    stack = [(output, False)]
    while stack:
        name, expanded = stack.pop()
        if name not in nodes:
            raise WeightsError(f"the graph reads {name!r}, which no node defines")
        if expanded:
            state[name] = True
            order.append(nodes[name])
            continue
        if state.get(name) is True:
            continue
        if name in state:
            raise WeightsError(f"the graph has a cycle through {name!r}")
        state[name] = False
        stack.append((name, True))
        stack.extend((_source(t), False) for t in reversed(nodes[name].inputs) if state.get(_source(t)) is not True)
    return order


class TFGraphModule(nn.Module):
    """The part of a frozen graph between one Placeholder and one output node, run with torch ops.

    ``forward(x)`` takes and returns tensors in the graph's own layout (NHWC images). Constants
    become buffers (float constants float32), so ``.to(device)`` moves them; gradients flow to ``x``.
    """

    def __init__(self, nodes: list[NodeDef], input_name: str, output_name: str):
        super().__init__()
        by_name = {n.name: n for n in nodes}
        if input_name not in by_name or by_name[input_name].op != "Placeholder":
            raise WeightsError(f"the graph has no Placeholder named {input_name!r}")
        needed = _needed(by_name, output_name)
        unknown = Counter(n.op for n in needed if n.op not in SUPPORTED_OPS)
        if unknown:
            names = ", ".join(f"{op} (x{k})" for op, k in sorted(unknown.items()))
            raise WeightsError(f"unsupported TensorFlow op(s): {names}; supported: {', '.join(SUPPORTED_OPS)}")
        if any(n.op == "Placeholder" and n.name != input_name for n in needed):
            raise WeightsError(f"{output_name!r} depends on another input than {input_name!r}")
        self.input_name, self.output_name = input_name, output_name
        self.input_shape = by_name[input_name].attrs.get("shape")
        self._slots = {n.name: i for i, n in enumerate(needed)}
        self._steps: list[tuple[int, Callable[..., Tensor], tuple[int, ...]]] = []
        self._constants: list[tuple[int, str]] = []
        for node in needed:
            slot = self._slots[node.name]
            if node.op == "Const":
                self._constants.append((slot, self._add_constant(node, slot)))
            elif node.op in OPS:
                args = tuple(self._slots[_source(t)] for t in node.inputs)
                self._steps.append((slot, OPS[node.op](node), args))
        self._input_slot = self._slots[input_name]
        self._output_slot = self._slots[output_name]

    def _add_constant(self, node: NodeDef, slot: int) -> str:
        value = node.attrs.get("value")
        if not isinstance(value, np.ndarray):
            raise WeightsError(f"Const {node.name!r} holds no tensor")
        if value.dtype.kind == "f":
            value = value.astype(np.float32, copy=False)
        buffer = f"const{slot}"
        self.register_buffer(buffer, torch.from_numpy(value), persistent=False)  # decoded arrays are writable copies
        return buffer

    def forward(self, x: Tensor) -> Tensor:
        values: list[Any] = [None] * len(self._slots)
        values[self._input_slot] = x
        for slot, buffer in self._constants:
            values[slot] = getattr(self, buffer)
        for slot, fn, args in self._steps:
            values[slot] = fn(*(values[a] for a in args))
        return values[self._output_slot]


def load_graph_module(path: str | Path, input_name: str, output_name: str) -> TFGraphModule:
    """A frozen GraphDef file as a torch module from ``input_name`` to ``output_name``."""
    nodes = read_graph_def(path)
    try:
        return TFGraphModule(nodes, input_name, output_name)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
