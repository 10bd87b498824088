"""Read and write StyleGAN2 and StyleGAN3 generator weights without ever executing anything from a file.

Three formats (:mod:`stylepuppet.generators.loader` tells them apart by content, never by the file name):

* NVIDIA network pickles (stylegan2-ada-pytorch, and the StyleGAN2 and StyleGAN3 pickles of the
  stylegan3 repository). NVIDIA's loader ``exec``s the Python source embedded in the file. Ours
  unpickles with an allow-list of globals (:data:`NETWORK_PICKLE`): the persistence hook is replaced
  by a function that only keeps the pickled ``meta`` dict (class name and ``__dict__``), tensors are
  rebuilt by our own functions from storages that ``torch.load(weights_only=True)`` decodes, numpy
  arrays and scalars (the StyleGAN3 layers' sampling rates and sizes) are rebuilt as numeric data
  only, and any other global raises :class:`UnsafePickleError` naming it. The family (StyleGAN2 or
  StyleGAN3) is told by the pickled synthesis network's layers; the generator is rebuilt from its
  constructor kwargs, cross-checked against the attributes pickled with each layer, and loaded
  strictly from the flat state dict of the pickled modules.
* rosinality stylegan2-pytorch checkpoints (``torch.save({"g_ema": state_dict, "latent_avg": w})``),
  read with ``torch.load(weights_only=True)`` and renamed onto NVIDIA's names
  (:func:`rosinality_to_nvidia`).
* Our own format: one safetensors file whose header metadata carries the JSON config
  (:func:`save_generator`); one self-contained file, so it can be downloaded or copied alone.

Every problem with a file (missing, empty, truncated, corrupted, another kind of file, an
unsupported network variant) raises :class:`WeightsError` with a one-line message.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor

from stylepuppet import atomic, safe_pickle
from stylepuppet.errors import ConfigError, StylePuppetError, WeightsError
from stylepuppet.generators import stylegan3
from stylepuppet.generators.stylegan2 import DEFAULT_FILTER, Generator, setup_filter
from stylepuppet.safe_pickle import AllowList, calling, fresh, one_line, shared, subclass

AnyGenerator = Generator | stylegan3.Generator

FORMAT = "stylepuppet.stylegan2"
#: Our safetensors format's ``format`` value per generator class.
OUR_FORMATS: dict[str, type[AnyGenerator]] = {FORMAT: Generator, "stylepuppet.stylegan3": stylegan3.Generator}
FORMAT_VERSION = 1
WHICH = ("G_ema", "G")

_ROSINALITY_KEYS = {"G_ema": "g_ema", "G": "g"}
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")


# ---------------------------------------------------------------------------------------------- writing


def save_generator(G: AnyGenerator, path: str | os.PathLike[str], *, source: str | None = None,
                   which: str | None = None) -> Path:
    """Write ``G`` in our format (safetensors; config, format version, source and which in its header), atomically."""
    fmt = next((name for name, cls in OUR_FORMATS.items() if type(G) is cls), None)
    if fmt is None:
        raise WeightsError(f"only StyleGAN2 and StyleGAN3 generators can be written in stylepuppet's format, not a "
                           f"{type(G).__name__}")
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    metadata = {"format": fmt, "format_version": str(FORMAT_VERSION),
                "config": json.dumps(G.init_kwargs, sort_keys=True)}
    if source is not None:
        metadata["source"] = source
    if which is not None:
        metadata["which"] = which
    with atomic.replacing(path, ".safetensors") as temp:
        safetensors.torch.save_file(tensors, str(temp), metadata=metadata)
    return path


# ---------------------------------------------------------------------------------------------- safe unpickling


class EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access); only its items matter."""


class PersistentObject:
    """Stands in for an NVIDIA persistent module: keeps the pickled ``meta`` dict, never runs its ``module_src``."""

    __slots__ = ("meta",)

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name"))

    @property
    def state(self) -> dict[str, Any]:
        state = self.meta.get("state")
        if not isinstance(state, dict):
            raise WeightsError(f"a pickled {self.class_name} has no state dict; the file is corrupted")
        return state

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


class _Storage:
    """A storage decoded by ``torch.load(weights_only=True)``; only these can back rebuilt tensors."""

    __slots__ = ("dtype", "numel", "untyped")

    def __init__(self, dtype: torch.dtype, untyped: torch.UntypedStorage, numel: int) -> None:
        self.dtype, self.untyped, self.numel = dtype, untyped, numel


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str) \
            or not isinstance(meta.get("state"), dict):
        raise WeightsError("a persistent object in the pickle has a malformed meta dict; the file is corrupted")
    return PersistentObject(meta)


def _load_storage(data: Any) -> _Storage:
    """``torch.storage._load_from_bytes``: the bytes are a legacy ``torch.save`` of one storage."""
    if not isinstance(data, (bytes, bytearray)):
        raise WeightsError("a tensor storage in the pickle is not a byte string; the file is corrupted")
    storage = safe_pickle.torch_load(bytes(data), what="a tensor storage in the pickle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        if isinstance(storage, torch.TypedStorage):
            return _Storage(storage.dtype, storage.untyped(), storage.size())
    if isinstance(storage, torch.UntypedStorage):
        return _Storage(torch.uint8, storage, storage.nbytes())
    raise WeightsError(f"a tensor storage in the pickle decodes to {type(storage).__name__}, not a storage")


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> Tensor:
    """``torch._utils._rebuild_tensor_v2`` with checks; returns a fresh copy without hooks or grad."""
    if not isinstance(storage, _Storage):
        raise WeightsError("a tensor in the pickle is not backed by a storage; the file is corrupted")
    _check_no_hooks(backward_hooks)
    if not (_is_index(storage_offset) and _is_index_tuple(size) and _is_index_tuple(stride)
            and len(size) == len(stride)):
        raise WeightsError("a tensor in the pickle has a malformed shape; the file is corrupted")
    if all(s > 0 for s in size):
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= storage.numel:
            raise WeightsError("a tensor in the pickle reaches past its storage; the file is corrupted")
    view = torch.empty(0, dtype=storage.dtype).set_(storage.untyped, storage_offset, tuple(size), tuple(stride))
    return view.clone(memory_format=torch.contiguous_format)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None) -> Tensor:
    """``torch._utils._rebuild_parameter[_with_state]``: the tensor itself (a parameter's extra state is dropped)."""
    if not isinstance(data, Tensor):
        raise WeightsError("a parameter in the pickle does not hold a tensor; the file is corrupted")
    _check_no_hooks(backward_hooks)
    return data


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """A fresh numeric dtype: the pickle's BUILD (byte order) then changes this copy, never numpy's shared one."""
    dtype = np.dtype(spec) if isinstance(spec, str) else None
    if dtype is None or dtype.kind not in "biufc":
        raise WeightsError(f"the pickle asks for a numpy dtype {spec!r}; only numeric dtypes are allowed")
    return np.dtype(spec, False, True)


def _numeric_dtype(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in "biufc" and not dtype.hasobject


def _array_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and all(_is_index(n) for n in shape) and math.prod(shape) < 2 ** 31


class _PickledArray(np.ndarray):
    """What ``numpy.core.multiarray._reconstruct`` stands in for: an array whose pickled state (BUILD) must be
    numeric data of the declared size; an object array's state would be arbitrary objects."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[0], int)
                and _array_shape(state[1]) and _numeric_dtype(state[2]) and isinstance(state[3], bool)
                and isinstance(state[4], (bytes, bytearray))
                and len(state[4]) == math.prod(state[1]) * state[2].itemsize):
            raise WeightsError("a numpy array in the pickle is malformed; only numeric arrays are allowed")
        super().__setstate__(state)


class _NumpyNdarray:
    """Stands in for ``numpy.ndarray``, which a network pickle only names as the class given to _reconstruct."""

    def __call__(self, *args: Any) -> None:
        raise WeightsError("the pickle calls numpy.ndarray directly; only pickled numeric arrays are allowed")


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if not isinstance(cls, _NumpyNdarray) or shape != (0,) or typecode not in (b"b", "b"):
        raise WeightsError("a numpy array in the pickle is malformed; only plain numeric arrays are allowed")
    return _PickledArray((0,), dtype=np.uint8)


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (arrays in protocol-5 pickles): a copy of numeric data."""
    if not (isinstance(buffer, (bytes, bytearray)) and _numeric_dtype(dtype) and _array_shape(shape)
            and order in ("C", "F") and len(buffer) == math.prod(shape) * dtype.itemsize):
        raise WeightsError("a numpy array in the pickle is malformed; only numeric arrays are allowed")
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` for numeric dtypes only (an object dtype would return arbitrary objects)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or dtype.hasobject \
            or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise WeightsError("a numpy scalar in the pickle is malformed; only numeric scalars are allowed")
    return np.frombuffer(data, dtype=dtype)[0]


#: Every global an NVIDIA network pickle may name, mapped to what stands in for it. Our classes and functions are
#: handed out as fresh subclasses and wrappers, so a pickle that sets attributes on what it was given (BUILD)
#: changes nothing beyond that one load; the builtin types are immutable.
NETWORK_PICKLE = AllowList("network pickle", {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): calling(_reconstruct_persistent_obj),
    ("dnnlib.util", "EasyDict"): subclass(EasyDict),
    ("dnnlib", "EasyDict"): subclass(EasyDict),
    ("collections", "OrderedDict"): shared(OrderedDict),
    ("builtins", "set"): shared(set),
    ("builtins", "frozenset"): shared(frozenset),
    ("torch._utils", "_rebuild_tensor_v2"): calling(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): calling(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): calling(_rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): calling(_load_storage),
    ("numpy", "dtype"): calling(_numpy_dtype),
    ("numpy.core.multiarray", "scalar"): calling(_numpy_scalar),
    ("numpy._core.multiarray", "scalar"): calling(_numpy_scalar),
    ("numpy", "ndarray"): fresh(_NumpyNdarray),
    ("numpy.core.multiarray", "_reconstruct"): calling(_numpy_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): calling(_numpy_reconstruct),
    ("numpy.core.numeric", "_frombuffer"): calling(_numpy_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): calling(_numpy_frombuffer),
})


# ---------------------------------------------------------------------------------------------- NVIDIA pickles


def read_nvidia(path: Path, which: str = "G_ema") -> AnyGenerator:
    """The ``which`` generator (``G_ema`` or ``G``) of an NVIDIA StyleGAN2 or StyleGAN3 network pickle, rebuilt as
    ours (nothing is run)."""
    _check_which(which)
    net = read_nvidia_pickle(path, which)
    sg3 = nvidia_family(net, path, which) == "stylegan3"
    try:
        kwargs, state = nvidia_generator_kwargs(net, path), nvidia_state_dict(net)
        G = _build(path, which, kwargs, state, stylegan3.Generator if sg3 else Generator)
        _check_attributes(net, G, f"{which} in {path}", stylegan3.PICKLED_ATTRIBUTES if sg3 else _CHECKED_ATTRIBUTES)
    except StylePuppetError:
        raise
    except Exception as exc:
        raise WeightsError(f"{which} in {path} is a malformed network pickle ({one_line(exc)})") from None
    return G


def read_nvidia_pickle(path: Path, which: str = "G_ema") -> PersistentObject:
    """The pickled (never executed) ``which`` Generator of an NVIDIA network pickle."""
    with open(path, "rb") as f:
        top = safe_pickle.load(f, NETWORK_PICKLE, source=str(path))
    if isinstance(top, PersistentObject):
        net = top
    elif isinstance(top, dict):
        net = top.get(which)
        if net is None:
            keys = ", ".join(one_line(k, 40) for k in list(top)[:8]) or "nothing"
            raise WeightsError(f"{path} has no {which!r} network (it holds: {keys}); give a generator pickle "
                               f"(NVIDIA training snapshots hold G and G_ema)")
    else:
        raise WeightsError(f"{path} holds a {type(top).__name__}, not NVIDIA networks; give a network pickle")
    if not isinstance(net, PersistentObject) or net.class_name != "Generator":
        what = net.class_name if isinstance(net, PersistentObject) else type(net).__name__
        raise WeightsError(f"{which} in {path} is a {what}, not a Generator; give a generator pickle")
    nvidia_family(net, path, which)
    return net


def nvidia_family(net: PersistentObject, path: Path | str, which: str = "G_ema") -> str:
    """"stylegan2" or "stylegan3", told by the pickled synthesis network's layers (never by code in the file):
    StyleGAN2 has blocks b4, b8, ...; StyleGAN3 (training.networks_stylegan3) starts with a SynthesisInput."""
    layers = _modules(_child(net, "synthesis", path))
    if "b4" in layers:
        return "stylegan2"
    first = layers.get("input")
    if isinstance(first, PersistentObject) and first.class_name == "SynthesisInput":
        return "stylegan3"
    names = ", ".join(list(layers)[:4])
    raise WeightsError(f"{which} in {path} is neither a StyleGAN2 nor a StyleGAN3 generator (its synthesis network has "
                       f"{names or 'no layers'}, ...); other networks are not supported")


def nvidia_state_dict(net: PersistentObject) -> dict[str, Tensor]:
    """Flat state dict of a pickled module tree: at each module its parameters, persistent buffers, then children."""
    out: dict[str, Tensor] = {}
    for prefix, module in _walk(net):
        state = module.state
        skip = state.get("_non_persistent_buffers_set") or set()
        entries = list(_as_dict(state.get("_parameters"), module).items())
        entries += [(k, v) for k, v in _as_dict(state.get("_buffers"), module).items() if k not in skip]
        for name, tensor in entries:
            if tensor is None:
                continue
            if not isinstance(tensor, Tensor):
                raise WeightsError(f"{prefix}{name} in the pickle is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor
    return out


def nvidia_generator_kwargs(net: PersistentObject, path: Path | str = "pickle") -> dict[str, Any]:
    """Constructor kwargs of a pickled Generator, in our layout, with ``conv_clamp`` read from its layers.

    stylegan2-ada-pytorch passes ``synthesis_kwargs`` as one dict; the stylegan3 repository passes
    them as top-level kwargs. Defaults differ between the two (the stylegan3 code clamps at 256
    by default), so the clamp the layers were really built with is taken from their pickled state.
    """
    state = net.state
    args = state.get("_init_args") or ()
    kwargs = state.get("_init_kwargs") or {}
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise WeightsError(f"the Generator in {path} has malformed constructor arguments; the file is corrupted")
    merged = _plain({**dict(zip(_GENERATOR_ARGS, args)), **kwargs})
    out = {key: merged.pop(key) for key in _GENERATOR_ARGS[:5] if key in merged}
    out["mapping_kwargs"] = merged.pop("mapping_kwargs", None) or {}
    synthesis = merged.pop("synthesis_kwargs", None) or {}
    synthesis.update(merged)
    clamps = {_plain(m.state.get("conv_clamp")) for _, m in _walk(net)
              if m.class_name in ("SynthesisLayer", "ToRGBLayer") and "conv_clamp" in m.state}
    if not all(c is None or isinstance(c, (int, float)) for c in clamps):
        raise WeightsError(f"the layers of the Generator in {path} have a malformed conv_clamp; the file is corrupted")
    if len(clamps) > 1:
        raise WeightsError(f"the layers of the Generator in {path} use different conv_clamp values "
                           f"{sorted(map(str, clamps))}; this variant is not supported")
    if clamps:
        synthesis["conv_clamp"] = clamps.pop()
    out["synthesis_kwargs"] = synthesis
    return out


#: Pickled layer attributes that must equal ours, or the network is a variant we would compute differently.
_CHECKED_ATTRIBUTES = ("z_dim", "c_dim", "w_dim", "num_ws", "num_layers", "img_resolution", "img_channels",
                       "in_channels", "resolution", "up", "use_noise", "activation", "conv_clamp", "padding",
                       "act_gain", "weight_gain", "bias_gain", "architecture", "num_conv", "num_torgb")


def _check_attributes(net: PersistentObject, G: AnyGenerator, where: str,
                      checked: tuple[str, ...] = _CHECKED_ATTRIBUTES) -> None:
    ours = dict(G.named_modules())
    for prefix, module in _walk(net):
        mine = ours.get(prefix.rstrip("."))
        if mine is None:
            continue
        for attr in checked:
            if attr in module.state and hasattr(mine, attr):
                theirs, expected = _plain(module.state[attr]), getattr(mine, attr)
                if not _same(theirs, expected):
                    raise WeightsError(f"{where}: {prefix}{attr} is {theirs!r} but a generator built from "
                                       f"its config has {expected!r}; this variant is not supported")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def _walk(net: PersistentObject, prefix: str = "") -> Iterator[tuple[str, PersistentObject]]:
    yield prefix, net
    for name, child in _modules(net).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise WeightsError(f"module {prefix}{name} in the pickle is a {type(child).__name__}, not a network layer")
        yield from _walk(child, f"{prefix}{name}.")


def _modules(net: PersistentObject) -> dict[str, Any]:
    return _as_dict(net.state.get("_modules"), net)


def _child(net: PersistentObject, name: str, path: Path | str) -> PersistentObject:
    child = _modules(net).get(name)
    if not isinstance(child, PersistentObject):
        raise WeightsError(f"the {net.class_name} in {path} has no {name} network; the file is not a generator pickle")
    return child


def _as_dict(value: Any, module: PersistentObject) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WeightsError(f"a pickled {module.class_name} has a malformed module dict; the file is corrupted")
    return value


def _plain(value: Any) -> Any:
    """EasyDicts, OrderedDicts, tuples, numpy arrays and scalars -> plain JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------- rosinality


def is_rosinality(content: Any) -> bool:
    """Whether a torch file's content is a rosinality checkpoint (``g_ema`` / ``g``) or a bare generator state dict."""
    return isinstance(content, dict) and ("style.1.weight" in content
                                          or any(isinstance(content.get(k), dict) for k in _ROSINALITY_KEYS.values()))


def read_rosinality(content: Any, path: Path, which: str = "G_ema") -> Generator:
    """The ``which`` generator (``g_ema`` / ``g``) of a rosinality stylegan2-pytorch checkpoint (``content``: the
    file ``path`` as read by :func:`stylepuppet.safe_pickle.torch_load`), rebuilt in NVIDIA's layout."""
    _check_which(which)
    if isinstance(content, dict) and "style.1.weight" in content:
        state, latent_avg = content, None  # a bare generator state dict
    elif isinstance(content, dict) and isinstance(content.get(_ROSINALITY_KEYS[which]), dict):
        state, latent_avg = content[_ROSINALITY_KEYS[which]], content.get("latent_avg")
    else:
        keys = ", ".join(map(str, list(content)[:8])) if isinstance(content, dict) else type(content).__name__
        raise WeightsError(f"{path} is a torch file without a rosinality {_ROSINALITY_KEYS[which]!r} generator "
                           f"(it holds: {keys or 'nothing'}); give a StyleGAN2 generator checkpoint")
    try:
        kwargs, state = rosinality_to_nvidia(state, latent_avg)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return _build(path, which, kwargs, state)


def rosinality_to_nvidia(state: dict[str, Any], latent_avg: Tensor | None = None
                         ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Map a rosinality ``Generator`` state dict onto NVIDIA's names; returns (Generator kwargs, state dict).

    The two compute the same function; the differences are in where constants live:

    * ``EqualLinear`` (mapping ``style.{i}``, lr_mul 0.01; modulation, lr_mul 1) scales like NVIDIA's
      FullyConnectedLayer: weights copy unchanged. The checkpoint does not record ``lr_mlp``;
      rosinality's default 0.01 (NVIDIA's too) is assumed.
    * ``ModulatedConv2d`` multiplies its weight by 1/sqrt(fan_in) before modulation, NVIDIA does not.
      For demodulated convolutions that factor would cancel except inside the epsilon, so it is
      folded into the weight: rosinality's ``scale * w * s`` then equals ours exactly. For ToRGB
      (no demodulation) NVIDIA applies the same 1/sqrt(C_in) to the styles, so the weight copies
      unchanged (equal up to float rounding of the product order).
    * The up-sampling convolution is a stride-2 transposed convolution of the unflipped kernel and
      a blur of [1,3,3,1] x 4 padded (1, 1), the image up-sampling pads (2, 1): both as NVIDIA's.
    * ``FusedLeakyReLU`` adds its bias, leaky ReLU 0.2, times sqrt(2): NVIDIA's bias+act.
      ``NoiseInjection.weight`` [1] is ``noise_strength``; ``noises.noise_{i}`` [1,1,r,r] are the
      ``noise_const`` buffers in layer order. ToRGB bias [1,3,1,1] becomes [3].
    * ``latent_avg`` (present in files converted from TensorFlow) becomes ``mapping.w_avg``; without
      it the buffer stays zero (truncation then pulls towards 0).
    * rosinality has no class labels and no conv_clamp.
    """
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in tensors:
            raise WeightsError(f"the rosinality state dict has no {key}; it is incomplete or another network")
        used.add(key)
        return tensors[key].detach().to(torch.float32)

    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in tensors:
        n_mlp += 1
    num_up = 0
    while f"to_rgbs.{num_up}.conv.weight" in tensors:
        num_up += 1
    if n_mlp == 0 or "input.input" not in tensors:
        raise WeightsError("the state dict is not a rosinality StyleGAN2 generator (no style.1.weight / input.input)")
    resolution = 4 * 2 ** num_up
    w_dim = int(take("style.1.weight").shape[1])
    channels = {4: int(take("input.input").shape[1])}
    for i in range(num_up):
        channels[8 * 2 ** i] = int(take(f"convs.{2 * i}.conv.weight").shape[1])
    channel_base, channel_max = _channel_config(channels)
    img_channels = int(take("to_rgb1.conv.weight").shape[1])

    out: dict[str, Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    avg = torch.zeros(w_dim) if latent_avg is None else torch.as_tensor(latent_avg, dtype=torch.float32).reshape(-1)
    if avg.numel() != w_dim:
        raise WeightsError(f"latent_avg has {avg.numel()} values, expected w_dim = {w_dim}")
    out["mapping.w_avg"] = avg
    out["synthesis.b4.const"] = take("input.input")[0]

    def styled_conv(src: str, dst: str, noise: int) -> None:
        weight = take(f"{src}.conv.weight")[0]
        out[f"{dst}.weight"] = weight / math.sqrt(weight[0].numel())
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape(())
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = take(f"noises.noise_{noise}")[0, 0]

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)

    styled_conv("conv1", "synthesis.b4.conv1", 0)
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for i in range(num_up):
        res = 8 * 2 ** i
        styled_conv(f"convs.{2 * i}", f"synthesis.b{res}.conv0", 2 * i + 1)
        styled_conv(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1", 2 * i + 2)
        to_rgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb")
        for key in (f"convs.{2 * i}.conv.blur.kernel", f"to_rgbs.{i}.upsample.kernel"):
            if key in tensors:
                _check_blur_kernel(take(key), key)
    leftover = sorted(set(tensors) - used)
    if leftover:
        raise WeightsError(f"the rosinality state dict has entries this reader does not know: "
                           f"{', '.join(leftover[:5])}")
    for res in [4] + [8 * 2 ** i for i in range(num_up)]:  # constants that rosinality keeps elsewhere
        names = ["", "conv1."] if res == 4 else ["", "conv0.", "conv1."]
        out.update({f"synthesis.b{res}.{name}resample_filter": setup_filter(DEFAULT_FILTER) for name in names})
    kwargs = {"z_dim": w_dim, "c_dim": 0, "w_dim": w_dim, "img_resolution": resolution,
              "img_channels": img_channels, "mapping_kwargs": {"num_layers": n_mlp},
              "synthesis_kwargs": {"channel_base": channel_base, "channel_max": channel_max}}
    return kwargs, out


def _channel_config(channels: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with ``min(base // res, max) == channels[res]`` for every resolution."""
    channel_max = max(channels.values())
    channel_base = max(c * res for res, c in channels.items())
    if any(min(channel_base // res, channel_max) != c for res, c in channels.items()):
        raise WeightsError(f"the channel widths {channels} cannot be expressed as NVIDIA's channel_base/channel_max")
    return channel_base, channel_max


def _check_blur_kernel(kernel: Tensor, key: str) -> None:
    expected = setup_filter(DEFAULT_FILTER) * 4
    if kernel.shape != expected.shape or not torch.allclose(kernel, expected, atol=1e-6):
        raise WeightsError(f"{key} is not the [1,3,3,1] blur kernel; other blur kernels are not supported")


# ---------------------------------------------------------------------------------------------- our format


def is_ours(head: bytes, size: int) -> bool:
    """Whether a file's first bytes (and its size) are those of a safetensors file (a JSON header after its length)."""
    return len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def read_ours(path: Path) -> AnyGenerator:
    """A generator written by :func:`save_generator`."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({one_line(exc)}); the file is truncated or "
                           f"corrupted, write or download it again") from None
    cls = OUR_FORMATS.get(meta.get("format", ""))
    if cls is None:
        raise WeightsError(f"{path} is a safetensors file but not a stylepuppet generator (no {FORMAT!r} metadata); "
                           f"convert the original weights with `stylepuppet weights convert`")
    version = meta.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise WeightsError(f"{path} uses generator format version {version!r}; this stylepuppet reads up to "
                           f"{FORMAT_VERSION}, upgrade stylepuppet")
    try:
        config = json.loads(meta.get("config", ""))
    except ValueError:
        raise WeightsError(f"{path} has an unreadable generator config; the file is corrupted") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path} has a malformed generator config; the file is corrupted")
    return _build(path, "", config, state, cls)


# ---------------------------------------------------------------------------------------------- building


def _build(path: Path, which: str, kwargs: dict[str, Any], state: dict[str, Tensor],
           cls: type[AnyGenerator] = Generator) -> AnyGenerator:
    """A ``cls`` generator from kwargs, loaded strictly with ``state``; every mismatch is a one-line WeightsError."""
    where = f"{which} in {path}" if which else str(path)
    family = "StyleGAN3" if cls is stylegan3.Generator else "StyleGAN2"
    try:
        G = cls(**kwargs)
    except (ConfigError, TypeError) as exc:
        raise WeightsError(f"{where} has a generator config we cannot build ({one_line(exc)})") from None
    expected = G.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise WeightsError(f"{where} does not match a {family} generator of its config ({'; '.join(parts)})")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(f"{where}: {key} has shape {list(state[key].shape)}, expected {list(tensor.shape)}")
        if not state[key].is_floating_point() or not bool(torch.isfinite(state[key]).all()):
            raise WeightsError(f"{where}: {key} is not finite floating-point data; the file is corrupted")
    G.load_state_dict(state, strict=True)
    return G


def _check_no_hooks(hooks: Any) -> None:
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks) > 0):
        raise WeightsError("a tensor in the pickle carries backward hooks; network pickles never do")


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_index_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(_is_index(v) for v in value)


def _check_which(which: str) -> None:
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
