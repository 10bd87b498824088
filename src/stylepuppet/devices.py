"""The device a command runs on, checked before any work starts."""

from __future__ import annotations

import ctypes
import functools

import torch

from stylepuppet.errors import ConfigError


def torch_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device; ConfigError when it names CUDA and CUDA is not available here (torch's own
    error would be a traceback at the first tensor moved there)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device {name!r} is not a device torch knows ({exc}); use cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device cuda: CUDA is not available on this machine ({why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


#: glibc's mallopt parameters (malloc.h) and the value given to both: far above any one step's tensors.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Keep the memory torch frees on the CPU in this process's heap, for the rest of the process; whether
    it could (glibc only: elsewhere nothing changes).

    torch's CPU allocator is plain malloc. By default glibc hands large blocks straight to the kernel and
    returns the top of its heap once enough of it is free, so every optimisation step, which frees its whole
    graph at the end of backward, faults the same memory in again page by page on the next one (zeroed by the
    kernel): about 180,000 page faults a step for StyleGAN2 256² + FAN + LPIPS, 10–30 % of the step's time on
    this machine (docs/performance.md). Raising both thresholds keeps those pages; the process's peak memory
    is unchanged, it just no longer shrinks after the peak.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
