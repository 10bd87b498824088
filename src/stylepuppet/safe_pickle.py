"""Reading pickled weights without running anything from them: one allow-list mechanism.

A pickle names the globals (functions, classes) it wants called; a plain ``pickle.load`` imports and
calls whatever it names, so loading a downloaded weights file could run any code. Every pickle
stylepuppet reads goes through an allow-list instead:

* our own pickle readers (NVIDIA network pickles, TorchScript archives) use :func:`load` with an
  :class:`AllowList` mapping each permitted global to a stand-in of our own (never the named object);
* plain torch files (``torch.save`` state dicts) go through :func:`torch_load`, i.e. torch's own
  allow-list unpickler (``weights_only=True``: tensors and containers), with the same one-line errors.

Any other global is refused with an :class:`~stylepuppet.errors.UnsafePickleError` that names it;
damaged data is a :class:`~stylepuppet.errors.WeightsError`. Neither suggests turning the check off.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch

from stylepuppet import safe_zip
from stylepuppet.errors import UnsafePickleError, WeightsError

#: Gives the object a pickle receives for the global ``(module, name)`` it asked for.
Provider = Callable[[str, str], Any]


def shared(obj: Any) -> Provider:
    """A provider that hands out ``obj`` itself at every lookup."""
    return lambda module, name: obj


def fresh(make: Callable[[], Any]) -> Provider:
    """A provider that hands out a new object made by ``make`` at every lookup, so a pickle that sets
    attributes on what it was given (BUILD) changes nothing beyond that one object."""
    return lambda module, name: make()


def calling(func: Callable[..., Any]) -> Provider:
    """A provider that hands out a new function passing its arguments to ``func``, so a pickle that sets
    attributes (``__defaults__``, ...) on what it was given never reaches ``func`` itself."""
    return fresh(lambda: lambda *args, **kwargs: func(*args, **kwargs))


def subclass(cls: type) -> Provider:
    """A provider that hands out a new subclass of ``cls`` (instances are still ``cls`` instances), so a pickle
    that sets attributes on the class it was given never changes ``cls`` for the rest of the process."""
    return fresh(lambda: type(cls.__name__, (cls,), {"__module__": cls.__module__}))


@dataclass(frozen=True)
class AllowList:
    """The globals a kind of pickle may name, each with the provider of its stand-in.

    ``names`` holds exact ``(module, name)`` pairs; ``modules`` holds module names whose every global
    (their submodules' too) is allowed, e.g. TorchScript's ``__torch__`` classes. ``what`` names the
    kind of file in messages ("network pickle").
    """

    what: str
    names: Mapping[tuple[str, str], Provider]
    modules: Mapping[str, Provider] = field(default_factory=dict)

    def provider(self, module: str, name: str) -> Provider | None:
        if module == "__builtin__":  # protocol 2 pickles written by Python 2 name builtins so
            module = "builtins"
        found = self.names.get((module, name))
        if found is not None:
            return found
        return next((p for prefix, p in self.modules.items() if module == prefix or module.startswith(prefix + ".")),
                    None)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals come from an :class:`AllowList`; persistent ids (a TorchScript archive's
    storages) go to ``persistent_load`` and are refused without one."""

    def __init__(self, file: BinaryIO, allow: AllowList, source: str,
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self.allow, self.source, self._persistent = allow, source, persistent_load

    def find_class(self, module: str, name: str) -> Any:
        provider = self.allow.provider(module, name)
        if provider is None:
            raise UnsafePickleError(f"{self.source}: refused to load: the pickle calls {one_line(module)}."
                                    f"{one_line(name)}, which is not allowed in a {self.allow.what} (nothing from "
                                    f"the file was run); only load weights from a source you trust")
        return provider(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(f"{self.source}: refused to load: the pickle uses persistent ids, which a "
                                    f"{self.allow.what} never does (nothing from the file was run)")
        return self._persistent(pid)


def load(data: BinaryIO | bytes, allow: AllowList, *, source: str,
         persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle ``data`` with ``allow``; nothing from it is executed.

    Raises :class:`UnsafePickleError` for a global outside the list and :class:`WeightsError` (naming
    ``source``) for damaged data or a stand-in that rejects what it was given.
    """
    file = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return RestrictedUnpickler(file, allow, source, persistent_load).load()
    except WeightsError as exc:  # raised by the stand-ins: say which file
        if str(exc).startswith(source):
            raise
        raise type(exc)(f"{source}: {exc}") from None
    except Exception as exc:
        raise WeightsError(f"{source} is not a readable {allow.what} ({one_line(exc)}); the file is truncated or "
                           f"corrupted, download it again") from None


def torch_load(source: str | Path | bytes, *, what: str, classes: Sequence[type] = ()) -> Any:
    """A plain torch file (path or bytes) read by torch's allow-list unpickler (``weights_only=True``:
    tensors and containers, plus ``classes``) onto the CPU; ``what`` names it in errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecations of legacy files
        try:
            _check_archive_sizes(source, what)
            with _torch_safe_globals(*classes):
                return torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu",
                                  weights_only=True)
        except WeightsError:
            raise
        except Exception as exc:
            raise torch_load_error(what, exc) from None


def _check_archive_sizes(source: str | Path | bytes, what: str) -> None:
    """Refuse a zip-format torch file whose members would unpack to more than :mod:`~stylepuppet.safe_zip` allows
    (``torch.load`` unpacks each member to the size its header announces)."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as zf:
            safe_zip.check_sizes(zf, what)


def state_dict(obj: Any, nested: Sequence[str] = ("state_dict",)) -> dict[str, Any] | None:
    """The state dict inside a loaded checkpoint: the mapping itself or the one under the first of the ``nested``
    keys that holds one, with nn.DataParallel's ``module.`` prefixes removed; None when there is no mapping."""
    if isinstance(obj, Mapping):
        obj = next((obj[key] for key in nested if isinstance(obj.get(key), Mapping)), obj)
    if not isinstance(obj, Mapping):
        return None
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def torch_load_error(what: str, exc: Exception) -> WeightsError:
    """One-line error for a failed ``torch.load(weights_only=True)``; names a refused global when that was the cause."""
    if isinstance(exc, FileNotFoundError):
        return WeightsError(f"{what} not found")
    refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if refused:
        return UnsafePickleError(f"{what}: refused to load: it calls {refused.group(1)}, which is not allowed in "
                                 f"weights (nothing from the file was run); only load weights from a source you trust")
    unpickler = re.search(r"WeightsUnpickler error: ([^\n]*)", str(exc))
    # the rest of torch's weights_only message advises disabling the check: never pass that on
    lines = [line for line in str(exc).splitlines() if line.strip()
             and not any(word in line.lower() for word in ("weights only", "weights_only", "documentation"))]
    first = unpickler.group(1) if unpickler else (lines or [type(exc).__name__])[0]
    return WeightsError(f"{what} is not a readable torch file ({one_line(first)}); the file is truncated, corrupted "
                        f"or not plain weights")


def _torch_safe_globals(*classes: type) -> contextlib.AbstractContextManager[Any]:
    """Allow extra plain classes in ``torch.load(weights_only=True)`` (torch >= 2.5; older torch refuses them)."""
    factory = getattr(torch.serialization, "safe_globals", None)
    return factory(list(classes)) if factory is not None and classes else contextlib.nullcontext()


def one_line(value: Any, limit: int = 160) -> str:
    """``value`` (often an exception) as one line of at most ``limit`` characters, for error messages."""
    text = " ".join(str(value).split()) or type(value).__name__
    if isinstance(value, BaseException) and type(value).__name__ not in text:
        text = f"{type(value).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
