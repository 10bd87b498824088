"""Reader of dlib's serialised DNN files (``.dat``), without dlib: layer tags, shapes, values.

Facts of the format, from dlib's public source (``dlib/serialize.h``, ``dlib/float_details.h``,
``dlib/cuda/tensor.h``, ``dlib/dnn/{core,input,layers,loss}.h``):

* Integers: a control byte (bit 0x80 = negative, low nibble = number of bytes that follow, bits 0x70
  always zero), then the magnitude in that many little-endian bytes.
* Floats (scalars): an int64 mantissa then an int16 exponent, value = mantissa · 2^exponent
  (exponents 32000/32001/32002 stand for +inf/−inf/NaN). Bools: one ASCII byte '1' or '0'.
  Strings: an unsigned length then the bytes.
* Tensors: version 2, four int64 dims (samples, k, rows, cols), then little-endian float32 values;
  an ``alias_tensor`` (a view into a layer's single ``params`` tensor) is version 1 and four dims.
* A network nests like its C++ type, outermost first: the loss layer (version, details), then one
  version integer per wrapper from the output down to the input (2 = a computational layer, 1 = a
  ``tag<N>`` or ``skip<N>`` wrapper, 3 = the first layer, which also holds the input layer), then the
  input layer and, unwinding back outwards, each computational layer's details (its tag string —
  ``con_4``, ``affine_``, ... — and parameters) followed by its saved training state (three bools and
  two or three tensors, skipped here). Tag and skip wrappers store nothing else: the file records
  neither which of the two a wrapper is nor its number, so a network's residual wiring comes from its
  known definition (see :mod:`stylepuppet.identity.dlib_resnet`).

Nothing in the file is executed; every announced size is checked against the bytes left before
anything is allocated, so a truncated or hostile file fails with one line instead of a huge allocation.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stylepuppet.errors import WeightsError

#: Longest layer tag accepted (dlib's are under 45 bytes); a longer "string" means a broken file.
MAX_TAG = 64
_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


@dataclass(frozen=True)
class Layer:
    """One layer of a dlib network: ``kind`` ("con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc",
    "wrapper" for a tag<N> or skip<N> wrapper, "input_rgb_image_sized", "loss_metric"), the ``tag`` string the
    file gave it (dlib's version string, e.g. "con_4"), its numbers (``attrs``) and its float32 tensors in
    torch's layout."""

    kind: str
    tag: str
    attrs: dict[str, float | int | bool] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DlibNetwork:
    """A dlib network as the file stores it: loss, input, and the layers from the input to the output."""

    loss: Layer
    input: Layer
    layers: tuple[Layer, ...]


class FormatError(Exception):
    """Where and why the bytes are not what dlib writes (turned into a WeightsError naming the file)."""


class _Reader:
    """Cursor over the file's bytes with dlib's primitive decoders; every read checks the bytes left."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise FormatError(f"{what} needs {n} bytes at byte {self.pos}, only {self.left} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def integer(self, max_bytes: int = 8, signed: bool = True, what: str = "an integer") -> int:
        start = self.pos
        control = self.take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or size == 0 or size > max_bytes or (control & 0x80 and not signed):
            raise FormatError(f"byte {start} (0x{control:02x}) does not start {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def unsigned(self, what: str) -> int:
        return self.integer(signed=False, what=what)

    def int32(self, what: str) -> int:
        return self.integer(max_bytes=4, what=what)

    def scalar(self, what: str = "a float") -> float:
        if self.left and self.data[self.pos] & 0x70:
            raise FormatError(f"{what} at byte {self.pos} is in dlib's old text format, which this reader does not "
                              "read")
        mantissa = self.integer(8, what=what)
        exponent = self.integer(2, what=what)
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:  # dlib's std::ldexp gives ±inf
            return math.copysign(math.inf, mantissa)

    def boolean(self, what: str) -> bool:
        start = self.pos
        byte = self.take(1, what)
        if byte not in (b"0", b"1"):
            raise FormatError(f"byte {start} is not {what} (a bool is '0' or '1')")
        return byte == b"1"

    def string(self, what: str, length: int | None = None) -> str:
        start = self.pos
        n = self.unsigned(what) if length is None else length
        if n > MAX_TAG:
            raise FormatError(f"{what} at byte {start} announces {n} bytes; dlib's tags are shorter than {MAX_TAG}")
        raw = self.take(n, what)
        text = raw.decode("ascii", errors="replace")
        if not raw.isascii() or not text.isprintable():
            raise FormatError(f"{what} at byte {start} is not text")
        return text

    def version(self, expected: tuple[int, ...], what: str) -> int:
        start = self.pos
        value = self.int32(f"the version of {what}")
        if value not in expected:
            raise FormatError(f"{what} at byte {start} has version {value}, expected {' or '.join(map(str, expected))}")
        return value

    def _dims(self, what: str) -> tuple[int, int, int, int]:
        dims = tuple(self.integer(8, what=f"a dimension of {what}") for _ in range(4))
        if min(dims) < 0:
            raise FormatError(f"{what} before byte {self.pos} has a negative dimension {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self, what: str, keep: bool = True) -> np.ndarray:
        """A ``resizable_tensor`` [samples, k, rows, cols] (float32); ``keep=False`` skips its values."""
        self.version((2,), what)
        dims = self._dims(what)
        count = math.prod(dims)
        if 4 * count > self.left:
            raise FormatError(f"{what} announces {dims} = {count} floats at byte {self.pos}, more than the "
                              f"{self.left} bytes left in the file")
        start = self.pos
        self.pos += 4 * count
        if not keep:
            return np.empty((0,), np.float32)
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=start).astype(np.float32).reshape(dims)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only the shape of a view into a layer's ``params``."""
        self.version((1,), what)
        return self._dims(what)


# ------------------------------------------------------------------------------------------ layer details


def _split(params: np.ndarray, shapes: dict[str, tuple[int, ...]], tag: str) -> dict[str, np.ndarray]:
    """Cut a layer's flat ``params`` into the named views, in order; their sizes must add up to it."""
    flat = params.reshape(-1)
    need = sum(math.prod(s) for s in shapes.values())
    if need != flat.size:
        raise FormatError(f"{tag}: params hold {flat.size} values, its views {dict(shapes)} need {need}")
    out, at = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[at:at + size].reshape(shape)
        at += size
    return out


def _multipliers(r: _Reader, tag: str) -> None:
    """Learning-rate and weight-decay multipliers: training settings, read and dropped."""
    for _ in range(4):
        r.scalar(f"a multiplier of {tag}")


def _con(r: _Reader, tag: str) -> Layer:
    params = r.tensor(f"{tag} params")
    filters = r.integer(what="num_filters")
    nr, nc = r.integer(what="filter rows"), r.integer(what="filter cols")
    stride = (r.int32("stride_y"), r.int32("stride_x"))
    padding = (r.int32("padding_y"), r.int32("padding_x"))
    weight_shape = r.alias(f"{tag} filters")
    bias_shape = r.alias(f"{tag} biases")
    _multipliers(r, tag)
    use_bias = r.boolean("use_bias") if tag in ("con_5", "con_6") else True
    if tag == "con_6" and r.boolean("use_relu"):
        raise FormatError(f"{tag} with a fused relu (dlib's fuse_layers) is not supported; save the unfused network")
    if weight_shape[0] != filters or weight_shape[2:] != (nr, nc) or min(stride) < 1 or min(padding) < 0:
        raise FormatError(f"{tag}: filters {weight_shape} do not match {filters} filters of {nr}x{nc}")
    shapes = {"weight": weight_shape} | ({"bias": (filters,)} if use_bias else {})
    if use_bias and math.prod(bias_shape) != filters:
        raise FormatError(f"{tag}: biases {bias_shape} for {filters} filters")
    return Layer("con", tag, {"stride_y": stride[0], "stride_x": stride[1], "padding_y": padding[0],
                              "padding_x": padding[1]}, _split(params, shapes, tag))


def _affine(r: _Reader, tag: str) -> Layer:
    params = r.tensor(f"{tag} params")
    gamma, beta = r.alias(f"{tag} gamma"), r.alias(f"{tag} beta")
    mode = r.int32("mode")
    if tag == "affine_2" and r.boolean("disabled"):
        raise FormatError(f"{tag} is disabled (fused into a convolution by dlib); save the unfused network")
    if mode not in (0, 1) or gamma != beta:
        raise FormatError(f"{tag}: mode {mode}, gamma {gamma}, beta {beta}")
    tensors = _split(params, {"gamma": (math.prod(gamma),), "beta": (math.prod(beta),)}, tag)
    return Layer("affine", tag, {"conv_mode": mode == 0}, tensors)  # conv mode: one value per channel


def _relu(r: _Reader, tag: str) -> Layer:
    if tag == "relu_2" and r.boolean("disabled"):
        raise FormatError(f"{tag} is disabled (fused into a convolution by dlib); save the unfused network")
    return Layer("relu", tag)


def _pool(kind: str) -> Callable[[_Reader, str], Layer]:
    def read(r: _Reader, tag: str) -> Layer:
        nr, nc = r.integer(what="window rows"), r.integer(what="window cols")
        stride = (r.int32("stride_y"), r.int32("stride_x"))
        padding = (r.int32("padding_y"), r.int32("padding_x"))
        if min(nr, nc, *padding) < 0 or min(stride) < 1:
            raise FormatError(f"{tag}: window {nr}x{nc}, stride {stride}, padding {padding}")
        return Layer(kind, tag, {"rows": nr, "cols": nc, "stride_y": stride[0], "stride_x": stride[1],
                                 "padding_y": padding[0], "padding_x": padding[1]})
    return read


def _fc(r: _Reader, tag: str) -> Layer:
    outputs, inputs = r.unsigned("num_outputs"), r.unsigned("num_inputs")
    params = r.tensor(f"{tag} params")
    weights = r.alias(f"{tag} weights")
    r.alias(f"{tag} biases")
    has_bias = r.int32("bias mode") == 0
    _multipliers(r, tag)
    if tag == "fc_3":
        has_bias = r.boolean("use_bias") and has_bias
    if math.prod(weights) != inputs * outputs:
        raise FormatError(f"{tag}: weights {weights} for {inputs} inputs and {outputs} outputs")
    shapes = {"weight": (inputs, outputs)} | ({"bias": (outputs,)} if has_bias else {})
    tensors = _split(params, shapes, tag)
    tensors["weight"] = np.ascontiguousarray(tensors["weight"].T)  # dlib multiplies x · W; torch stores W^T
    return Layer("fc", tag, {}, tensors)


def _input_rgb_image_sized(r: _Reader, tag: str) -> Layer:
    means = [r.scalar(f"the {c} mean") for c in ("red", "green", "blue")]
    rows, cols = r.unsigned("rows"), r.unsigned("cols")
    return Layer("input_rgb_image_sized", tag, {"avg_red": means[0], "avg_green": means[1], "avg_blue": means[2],
                                                "rows": rows, "cols": cols})


def _loss_metric(r: _Reader, tag: str) -> Layer:
    # "loss_metric_" predates the stored settings; dlib then uses margin 0.1, distance threshold 0.75
    margin, threshold = (r.scalar("margin"), r.scalar("distance threshold")) if tag == "loss_metric_2" else (0.1, 0.75)
    return Layer("loss_metric", tag, {"margin": margin, "distance_threshold": threshold})


LAYER_TAGS: dict[str, Callable[[_Reader, str], Layer]] = {
    "con_4": _con, "con_5": _con, "con_6": _con,
    "affine_": _affine, "affine_2": _affine,
    "relu_": _relu, "relu_2": _relu,
    "max_pool_2": _pool("max_pool"), "avg_pool_2": _pool("avg_pool"),
    "add_prev_": lambda r, tag: Layer("add_prev", tag),
    "fc_2": _fc, "fc_3": _fc,
}
INPUT_TAGS: dict[str, Callable[[_Reader, str], Layer]] = {"input_rgb_image_sized": _input_rgb_image_sized}
LOSS_TAGS: dict[str, Callable[[_Reader, str], Layer]] = {"loss_metric_": _loss_metric, "loss_metric_2": _loss_metric}


def _details(r: _Reader, known: dict[str, Callable[[_Reader, str], Layer]], what: str,
             length: int | None = None) -> Layer:
    start = r.pos
    tag = r.string(f"the tag of {what}", length)
    if tag not in known:
        raise FormatError(f"unknown {what} tag {tag!r} at byte {start} (this reader knows {', '.join(known)})")
    return known[tag](r, tag)


def _training_state(r: _Reader, tensors: int) -> None:
    """A wrapper's saved training state (setup/stale/disabled flags, gradients, cached output): skipped."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        r.boolean(name)
    for name in ("x_grad", "cached_output", "params_grad")[:tensors]:
        r.tensor(name, keep=False)


# ------------------------------------------------------------------------------------------ the network


def parse_network(data: bytes | mmap.mmap) -> DlibNetwork:
    """Walk a serialised network (see the module docstring); raises :class:`FormatError`."""
    r = _Reader(data)
    r.version((1,), "the loss layer")
    loss = _details(r, LOSS_TAGS, "loss layer")
    wrappers = []  # version of each wrapper, output side first
    while True:
        value = r.int32("a layer version")
        if value > 3:  # not a version: the length of the input layer's tag, innermost of all
            break
        wrappers.append(value)
    if not wrappers or wrappers[-1] not in (2, 3):
        raise FormatError("the innermost layer must be a computational layer holding the input layer")
    first_version = wrappers.pop()
    input_layer = _details(r, INPUT_TAGS, "input layer", length=value)
    layers = [_details(r, LAYER_TAGS, "layer")]
    _training_state(r, tensors=3)
    if first_version == 3:
        r.integer(what="sample_expansion_factor")
    for version in reversed(wrappers):
        if version == 1:
            layers.append(Layer("wrapper", ""))
            continue
        if version != 2:
            raise FormatError(f"a layer has version {version} (expected 1 for tag/skip wrappers, 2 for layers)")
        layers.append(_details(r, LAYER_TAGS, "layer"))
        _training_state(r, tensors=3)
    if r.left:
        raise FormatError(f"{r.left} unread bytes after the network at byte {r.pos}")
    return DlibNetwork(loss, input_layer, tuple(layers))


def read_dlib_network(path: str | Path) -> DlibNetwork:
    """The layers of a dlib DNN file; a file that is not one (or uses layers this reader does not know)
    raises a one-line :class:`~stylepuppet.errors.WeightsError` naming the file and the cause."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if path.stat().st_size == 0:
                raise WeightsError(f"{path} is empty, not a dlib network file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return parse_network(data)
    except FormatError as exc:
        raise WeightsError(f"{path} is not a dlib network this reader understands: {exc}") from None
    except OSError as exc:
        raise WeightsError(f"cannot read {path} ({exc.strerror or exc})") from None
