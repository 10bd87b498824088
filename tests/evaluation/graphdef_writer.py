"""Test helper: encode tiny TensorFlow GraphDefs in the protobuf wire format, to feed the reader.

Field numbers as in TensorFlow's graph.proto / node_def.proto / attr_value.proto / tensor.proto.
Values are Python types: str -> ``s``, bool -> ``b``, int -> ``i``, float -> ``f``,
``np.ndarray`` -> ``tensor``, ``Shape`` -> ``shape``, ``DType`` -> ``type``, list of ints -> ``list.i``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.int64): 9,
          np.dtype(bool): 10}


@dataclass(frozen=True)
class Shape:
    dims: tuple[int, ...]


@dataclass(frozen=True)
class DType:
    code: int


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative ints as 64-bit two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def field_varint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def shape(dims: tuple[int, ...]) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, d)) for d in dims)


def tensor(value: np.ndarray, *, as_values: bool = False, fill: bool = False) -> bytes:
    """A TensorProto: raw ``tensor_content`` by default, the typed repeated field (packed) with
    ``as_values``, or one value that fills the shape with ``fill``."""
    value = np.asarray(value)
    out = field_varint(1, DTYPES[value.dtype]) + field_bytes(2, shape(value.shape))
    if fill:
        value = value.reshape(-1)[:1]
    elif not as_values:
        return out + field_bytes(4, value.astype(value.dtype.newbyteorder("<")).tobytes())
    flat = value.reshape(-1)
    if value.dtype == np.float32:
        return out + field_bytes(5, struct.pack(f"<{flat.size}f", *flat))
    number = {3: 7, 9: 10, 10: 11}[DTYPES[value.dtype]]
    return out + field_bytes(number, b"".join(varint(int(v)) for v in flat))


def attr(value: object) -> bytes:
    if isinstance(value, str):
        return field_bytes(2, value.encode())
    if isinstance(value, bool):
        return field_varint(5, int(value))
    if isinstance(value, int):
        return field_varint(3, value)
    if isinstance(value, float):
        return key(4, 5) + struct.pack("<f", value)
    if isinstance(value, np.ndarray):
        return field_bytes(8, tensor(value))
    if isinstance(value, Shape):
        return field_bytes(7, shape(value.dims))
    if isinstance(value, DType):
        return field_varint(6, value.code)
    if isinstance(value, list):
        return field_bytes(1, field_bytes(3, b"".join(varint(v) for v in value)))
    raise TypeError(type(value))


def node(name: str, op: str, inputs: tuple[str, ...] = (), **attrs: object) -> bytes:
    out = field_bytes(1, name.encode()) + field_bytes(2, op.encode())
    out += b"".join(field_bytes(3, i.encode()) for i in inputs)
    for k, v in attrs.items():
        raw = field_bytes(8, v) if isinstance(v, bytes) else attr(v)  # bytes: a pre-encoded TensorProto
        out += field_bytes(5, field_bytes(1, k.encode()) + field_bytes(2, raw))
    return out


def graph(*nodes: bytes) -> bytes:
    return b"".join(field_bytes(1, n) for n in nodes)


def const(name: str, value: np.ndarray) -> bytes:
    value = np.asarray(value)
    return node(name, "Const", value=value, dtype=DType(DTYPES[value.dtype]))
