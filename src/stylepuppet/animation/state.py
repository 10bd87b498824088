"""What a run folder holds between stages, and how a run resumes bit-identically.

The work files of ``OUT/``: the face track (:data:`TRACK`), the landmark targets (:data:`TARGETS`) and
the run state (:data:`STATE`: latents and loss terms of the frames done so far, the noise frozen after
frame 0, and a fingerprint of the config and inputs). Running the same command again finds the state
of the very same run (same fingerprint) and continues after its last complete frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from stylepuppet import atomic
from stylepuppet.config import AnimateConfig
from stylepuppet.errors import ConfigError, MediaError
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.video import content_digest

T = TypeVar("T")

#: The work files of a run folder (the outputs are listed in :mod:`stylepuppet.animation.outputs`).
STATE, TARGETS, TRACK = "state.npz", "targets.npz", "track.npz"
#: What reading a damaged or truncated .npz raises (numpy's and zipfile's errors).
DAMAGED_NPZ = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def fingerprint(cfg: AnimateConfig, inputs: dict[str, Path | None]) -> str:
    """What decides the latents: the resolved config (but the sub-frame count, the latent filter, the
    side-by-side's points panel and paste-back, which only change the rendering) and the content of every
    input file."""
    settings = dataclasses.replace(cfg, subframes=1, latent_smooth=0.0).to_dict()
    for rendering in ("show_points", "paste_back", "paste_into"):  # left out, not set: runs saved before these
        settings.pop(rendering)  # settings existed still resume
    h = hashlib.sha256(json.dumps(settings, indent=2, sort_keys=True).encode())
    for name, path in sorted(inputs.items()):
        h.update(f"{name}={content_digest(path) if path is not None else '-'};".encode())
    return h.hexdigest()


def read_work_file(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)`` of a work file of the run folder; MediaError ("rerun with --restart") when it is damaged."""
    try:
        return read(path)
    except DAMAGED_NPZ as exc:
        raise MediaError(f"cannot read the saved run file {path} ({type(exc).__name__}: {str(exc)[:120]}); the "
                         "file is damaged; rerun with --restart") from None

#: Frames per state chunk file: a save after each frame rewrites at most this many frames' latents.
CHUNK = 32


def chunk_folder(path: Path) -> Path:
    """Where the state file ``path`` (``OUT/state.npz``) keeps its chunks of per-frame results."""
    return path.with_name(f"{path.stem}-frames")


@dataclass
class RunState:
    """Latents and loss terms of the frames done so far, and the noise frozen after frame 0.

    On disk the state is a header ``OUT/state.npz`` (fingerprint, noise) and the frames in chunk
    files of :data:`CHUNK` frames (``OUT/state-frames/000000.npz``, …). :meth:`save` writes only
    what changed since the last save — the header when the noise dict was replaced, and the chunks
    holding new frames — so saving after each frame costs the same at frame 10 and at frame 10 000
    (rewriting every latent each frame wrote O(T²) bytes over a run). Every file is written
    atomically (temporary file, then rename), the header before the chunks: a crash leaves the
    frames of complete chunk writes, and the rest are recomputed bit-identically on resume.
    """

    fingerprint: str
    ws: list[torch.Tensor]
    terms: dict[str, list[float]]
    noise: dict[str, np.ndarray]
    #: The optimiser's state after the last frame done (Adam's moments with ``schedule.carry_moments``,
    #: L-BFGS's curvature pairs; empty otherwise), saved with the chunk holding that frame so a resumed run
    #: continues exactly.
    carried: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    _saved_frames: int = dataclasses.field(default=0, repr=False, compare=False)
    _saved_noise: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def done(self) -> int:
        return len(self.ws)

    def save(self, path: Path) -> None:
        if self._saved_noise is not self.noise:
            arrays: dict[str, np.ndarray] = {"fingerprint": np.array(self.fingerprint), "chunk": np.int64(CHUNK)}
            for name, value in self.noise.items():
                arrays[f"noise/{name}"] = value
            atomic.save_npz(path, **arrays)
            self._saved_noise = self.noise
        folder = chunk_folder(path)
        first = self._saved_frames // CHUNK
        if first * CHUNK < self.done:
            folder.mkdir(exist_ok=True)
        for c in range(first, -(-self.done // CHUNK)):
            lo, hi = c * CHUNK, min((c + 1) * CHUNK, self.done)
            chunk = {"fingerprint": np.array(self.fingerprint), "ws": torch.stack(self.ws[lo:hi]).numpy()}
            for name, values in self.terms.items():
                chunk[f"loss/{name}"] = np.asarray(values[lo:hi], dtype=np.float64)
            if hi == self.done:
                chunk.update({f"carried/{k}": v for k, v in self.carried.items()})
            atomic.save_npz(folder / f"{c:06d}.npz", **chunk)
        self._saved_frames = self.done

    @classmethod
    def load(cls, path: Path) -> RunState:
        """The header and the consecutive complete frames of its chunks (a short chunk ends the run)."""
        with np.load(path) as z:
            fp = str(z["fingerprint"])
            noise = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("noise/")}
            size = int(z["chunk"])
        ws: list[torch.Tensor] = []
        terms: dict[str, list[float]] = {}
        carried: dict[str, np.ndarray] = {}
        folder = chunk_folder(path)
        while (folder / f"{len(ws) // size:06d}.npz").is_file() and len(ws) % size == 0:
            with np.load(folder / f"{len(ws) // size:06d}.npz") as z:
                if str(z["fingerprint"]) != fp:
                    raise ValueError(f"{folder} holds frames of another run")
                for k in z.files:
                    if k.startswith("loss/"):
                        terms.setdefault(k.split("/", 1)[1], []).extend(z[k].tolist())
                ws.extend(torch.from_numpy(w.copy()) for w in z["ws"])
                carried = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("carried/")}
        return cls(fp, ws, terms, noise, carried, len(ws), noise)

    @staticmethod
    def remove(path: Path) -> None:
        """Delete a saved state (header and chunks)."""
        path.unlink(missing_ok=True)
        folder = chunk_folder(path)
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()


def restore_noise(generator: LatentGenerator, noise: dict[str, np.ndarray]) -> None:
    """Put saved noise buffers (by name) back into the generator, as they were after frame 0."""
    buffers = generator.noise_buffers()
    if set(buffers) != set(noise):
        raise MediaError("the saved noise buffers do not match the generator; rerun with --restart")
    with torch.no_grad():
        for name, buf in buffers.items():
            buf.copy_(torch.from_numpy(noise[name]).to(buf.device, buf.dtype))


def snapshot_noise(generator: LatentGenerator) -> dict[str, np.ndarray]:
    """A copy of the generator's noise buffers by name (taken after frame 0, saved with the state)."""
    return {name: buf.detach().cpu().numpy().copy() for name, buf in generator.noise_buffers().items()}


def resume(path: Path, stamp: str) -> RunState | None:
    """The state saved at ``path`` if it is this very run's (fingerprint ``stamp``), None when there is none.

    ConfigError when it is another run's, MediaError when it cannot be read.
    """
    if not path.exists():
        return None
    state = read_work_file(path, RunState.load)
    if state.fingerprint != stamp:
        raise ConfigError(f"{path.parent} holds a run with other settings or inputs; rerun the same command to "
                          "resume it, add --restart to start over, or choose another -o folder")
    return state
