"""Read the tensors of a TorchScript archive without running anything from it.

``torch.jit.load`` compiles and runs the archive's program (its ``code/`` and any ``__setstate__``),
so a downloaded ``.pt`` could make it do anything TorchScript can. This reader treats the archive
as data: it unpickles ``data.pkl`` (and ``constants.pkl``) with an allow-list of globals
(:data:`SCRIPT_PICKLE`, :mod:`stylepuppet.safe_pickle`), turns
every TorchScript class (``__torch__.*``) into an inert :class:`ScriptObject` that only holds the
attributes it was pickled with, and builds tensors from the raw storages in ``data/`` (or
``constants/``). The program text is available as plain strings (``code``) for inspection.

Archive layout (PyTorch's ``torch.jit.save``): one top-level folder holding ``data.pkl``,
``constants.pkl``, ``code/**.py``, ``data/<key>`` (storage bytes), ``version`` and ``byteorder``.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stylepuppet import safe_pickle, safe_zip
from stylepuppet.errors import UnsafePickleError, WeightsError
from stylepuppet.safe_pickle import AllowList, calling, fresh

#: Storage classes a persistent id may name, and the dtype of their elements.
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_LIST_BUILDERS = {"build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_strlist",
                  "build_complexlist"}


class ScriptObject:
    """An inert stand-in for a TorchScript object (module or class instance): its qualified name and
    the attributes (or raw state) it was pickled with. It has no methods from the archive."""

    qualified_name = "__torch__"
    attributes: dict[str, Any]
    state: Any

    def __new__(cls, *_: Any) -> ScriptObject:  # pickle's NEWOBJ calls __new__ only
        obj = super().__new__(cls)
        obj.attributes, obj.state = {}, None
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.attributes = dict(state)
        else:
            self.state = state

    def __repr__(self) -> str:
        return f"ScriptObject({self.qualified_name}, {sorted(self.attributes)})"


def _script_class(module: str, name: str) -> type[ScriptObject]:
    return type(name, (ScriptObject,), {"qualified_name": f"{module}.{name}"})


def _rebuild_tensor(storage: Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> Tensor:
    if not isinstance(storage, Tensor):
        raise WeightsError("a tensor in the archive has no storage; the file is corrupt")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


#: Every global the pickles of a TorchScript archive may name. Each lookup hands out a fresh object of
#: ours, so a pickle that sets attributes on what it was given (BUILD) changes nothing beyond that object.
SCRIPT_PICKLE = AllowList("TorchScript archive", {
    ("torch._utils", "_rebuild_tensor_v2"): calling(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor"): calling(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): fresh(lambda: lambda data, *_: data),
    ("collections", "OrderedDict"): fresh(lambda: lambda *args: OrderedDict(*args)),
    ("torch.jit._pickle", "restore_type_tag"): fresh(lambda: lambda value, *_: value),
    **{("torch.jit._pickle", name): fresh(lambda: lambda items: list(items)) for name in _LIST_BUILDERS},
    **{("torch", name): (lambda module, name: ("storage-class", name)) for name in STORAGE_DTYPES},
}, modules={"__torch__": _script_class})


def _storage_loader(storages: dict[str, Tensor], source: str) -> Callable[[Any], Tensor]:
    """The persistent-id hook of one pickle: a storage of the archive, by key, viewed as the named dtype."""

    def load(pid: Any) -> Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{source} holds an unknown persistent reference {pid!r:.80}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not (isinstance(kind, tuple) and kind[0] == "storage-class"):
            raise UnsafePickleError(f"{source} names an unknown storage type {kind!r:.80}")
        if key not in storages:
            raise WeightsError(f"{source} refers to storage {key!r}, which the archive does not hold; "
                               "the file is truncated or corrupt")
        storage = storages[key].view(STORAGE_DTYPES[kind[1]])
        if storage.numel() < numel:
            raise WeightsError(f"{source}: storage {key!r} holds {storage.numel()} elements, expected {numel}; "
                               "the file is truncated or corrupt")
        return storage

    return load


@dataclass
class TorchScriptArchive:
    """What a TorchScript file holds, as data: the root object, the constants, the code text."""

    root: ScriptObject
    constants: tuple
    code: dict[str, str] = field(default_factory=dict)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor reachable from the root through attributes, by dotted path (``layers.conv1.weight``)."""
        out: dict[str, Tensor] = {}
        _collect(self.root, "", out, set())
        return out


def _collect(obj: Any, prefix: str, out: dict[str, Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        out[prefix] = obj
    elif isinstance(obj, ScriptObject):
        for name, value in obj.attributes.items():
            _collect(value, f"{prefix}.{name}" if prefix else name, out, seen)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _collect(value, f"{prefix}.{i}", out, seen)
    elif isinstance(obj, dict):
        for name, value in obj.items():
            _collect(value, f"{prefix}.{name}", out, seen)


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a zip holding a TorchScript program (``*/code/`` next to ``*/data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


def _storage_tensors(zf: zipfile.ZipFile, names: list[str], folder: str, source: str) -> dict[str, Tensor]:
    out = {}
    for name in names:
        if name.startswith(folder) and name != folder and "/" not in name[len(folder):]:
            raw = np.frombuffer(safe_zip.read_member(zf, name, source), dtype=np.uint8).copy()
            out[name[len(folder):]] = torch.from_numpy(raw)
    return out


def read_torchscript(path: str | Path) -> TorchScriptArchive:
    """Read a TorchScript archive's objects and tensors without executing it (see the module docstring).

    Raises UnsafePickleError for a pickle that names anything outside the allow-list and WeightsError
    for a file that is not such an archive.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path} is not a TorchScript archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as zf:
            root, constants, code = _read_archive(zf, path)
    except safe_zip.ZIP_ERRORS as exc:
        raise WeightsError(f"{path} is a damaged TorchScript archive ({type(exc).__name__}: {str(exc)[:100]}); "
                           "download it again") from None
    if not isinstance(root, ScriptObject):
        raise WeightsError(f"{path} is not a TorchScript module archive (its data.pkl holds a {type(root).__name__})")
    return TorchScriptArchive(root, tuple(constants) if isinstance(constants, (tuple, list)) else (constants,), code)


def _read_archive(zf: zipfile.ZipFile, path: Path) -> tuple[Any, Any, dict[str, str]]:
    """The root object, the constants and the code of an open archive; every member read is size-capped."""
    source = str(path)
    safe_zip.check_sizes(zf, source)
    names = zf.namelist()
    data_pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(data_pkls) != 1:
        raise WeightsError(f"{path} is not a TorchScript archive (no single <name>/data.pkl)")
    top = data_pkls[0][: -len("data.pkl")]
    byteorder = (safe_zip.read_member(zf, top + "byteorder", source).decode(errors="replace").strip()
                 if top + "byteorder" in names else "little")
    if byteorder != "little":
        raise WeightsError(f"{path} was saved big-endian, which is not supported; re-save it on a "
                           "little-endian machine")
    code = {n[len(top):]: safe_zip.read_member(zf, n, source).decode("utf-8", errors="replace") for n in names
            if n.startswith(top + "code/") and n.endswith(".py")}
    data_storages = _storage_tensors(zf, names, top + "data/", source)
    root = _unpickle(safe_zip.read_member(zf, top + "data.pkl", source), data_storages, f"{path.name}:data.pkl")
    constants: Any = ()
    if top + "constants.pkl" in names:
        const_storages = _storage_tensors(zf, names, top + "constants/", source) or data_storages
        constants = _unpickle(safe_zip.read_member(zf, top + "constants.pkl", source), const_storages,
                              f"{path.name}:constants.pkl")
    return root, constants, code


def _unpickle(data: bytes, storages: dict[str, Tensor], source: str) -> Any:
    return safe_pickle.load(data, SCRIPT_PICKLE, source=source, persistent_load=_storage_loader(storages, source))
