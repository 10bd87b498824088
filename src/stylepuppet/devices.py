"""The device a command runs on, checked before any work starts."""

from __future__ import annotations

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
