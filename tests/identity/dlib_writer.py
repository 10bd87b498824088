"""Writes small networks in dlib's DNN serialisation (the layout of dlib/serialize.h and dlib/dnn), for tests.

Each layer is given as (tag bytes of its details) or None for a tag/skip wrapper, listed from the input
to the output; :func:`network` nests them as dlib does (versions outermost first, details innermost first).
"""

from __future__ import annotations

import math

import numpy as np


def integer(value: int) -> bytes:
    """dlib's portable integer: control byte (0x80 = negative, low nibble = byte count), then the magnitude."""
    magnitude = abs(int(value))
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def scalar(value: float) -> bytes:
    """A float as dlib writes a float: int64 mantissa of 24 significant bits, then int16 exponent."""
    if value == 0:
        return integer(0) + integer(0)
    frac, exp = math.frexp(float(np.float32(value)))
    mantissa, exponent = int(frac * (1 << 24)), exp - 24
    while mantissa & 0xFF == 0:
        mantissa >>= 8
        exponent += 8
    return integer(mantissa) + integer(exponent)


def boolean(value: bool) -> bytes:
    return b"1" if value else b"0"


def string(text: str) -> bytes:
    return integer(len(text)) + text.encode("ascii")


def tensor(values: np.ndarray, dims: tuple[int, int, int, int] | None = None) -> bytes:
    values = np.asarray(values, dtype="<f4")
    dims = dims or (values.size, 1, 1, 1)
    return integer(2) + b"".join(integer(d) for d in dims) + values.tobytes()


def alias(dims: tuple[int, int, int, int]) -> bytes:
    return integer(1) + b"".join(integer(d) for d in dims)


def multipliers() -> bytes:
    return scalar(1.0) + scalar(1.0) + scalar(1.0) + scalar(0.0)


def con(weight: np.ndarray, bias: np.ndarray, stride: int, padding: int, tag: str = "con_4") -> bytes:
    out_ch, _, kh, kw = weight.shape
    params = np.concatenate([weight.reshape(-1), bias])
    return (string(tag) + tensor(params) + integer(out_ch) + integer(kh) + integer(kw) + integer(stride)
            + integer(stride) + integer(padding) + integer(padding) + alias(weight.shape) + alias((1, out_ch, 1, 1))
            + multipliers())


def affine(gamma: np.ndarray, beta: np.ndarray) -> bytes:
    k = gamma.size
    return (string("affine_") + tensor(np.concatenate([gamma, beta])) + alias((1, k, 1, 1)) + alias((1, k, 1, 1))
            + integer(0))


def relu() -> bytes:
    return string("relu_")


def pool(kind: str, window: int, stride: int) -> bytes:
    return string(f"{kind}_pool_2") + integer(window) * 2 + integer(stride) * 2 + integer(0) * 2


def add_prev() -> bytes:
    return string("add_prev_")


def fc(weight_in_out: np.ndarray) -> bytes:
    inputs, outputs = weight_in_out.shape
    return (string("fc_2") + integer(outputs) + integer(inputs) + tensor(weight_in_out, (inputs, outputs, 1, 1))
            + alias((inputs, outputs, 1, 1)) + alias((1, outputs, 1, 1)) + integer(1) + multipliers())


def input_rgb(size: int, means: tuple[float, float, float] = (122.782, 117.001, 104.298)) -> bytes:
    return string("input_rgb_image_sized") + b"".join(scalar(m) for m in means) + integer(size) + integer(size)


def loss_metric(margin: float = 0.04, threshold: float = 0.6) -> bytes:
    return string("loss_metric_2") + scalar(margin) + scalar(threshold)


def _state(first: bool) -> bytes:
    """A layer's training state as dlib saves it after training: flags and empty tensors."""
    empty = tensor(np.zeros(0), (0, 0, 0, 0))
    return boolean(True) + boolean(False) + boolean(False) + empty * 3 + (integer(1) if first else b"")


def network(input_layer: bytes, layers: list[bytes | None], loss: bytes | None = None) -> bytes:
    """A whole network file; ``layers`` from the input up, None for a tag/skip wrapper."""
    if layers[0] is None:
        raise ValueError("the first layer must be a computational layer")
    versions = [3] + [1 if layer is None else 2 for layer in layers[1:]]
    head = integer(1) + (loss or loss_metric()) + b"".join(integer(v) for v in reversed(versions))
    body = input_layer + layers[0] + _state(first=True)
    body += b"".join(layer + _state(first=False) for layer in layers[1:] if layer is not None)
    return head + body
