"""What the browser app can offer on this machine: network sets that will load, and the bundled samples.

Nothing here downloads: a set is offered only when its files are on disk (the offline DCGAN and
face mesh in the workplace's ``shared/models`` beside the repository, or registry weights already
in the cache), so a run started from the page never stalls on a download it cannot make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stylepuppet import weights
from stylepuppet.config import DCGAN_KEEP_IDENTITY

#: The workplace's shared folder (sample media, offline networks): ``shared/`` beside the repository.
SHARED = Path(__file__).resolve().parents[3].parent / "shared"
DCGAN_FILE, MESH_FILE = "digiface_dcgan64_G.pt", "face_landmark.tflite"
SAMPLE_IMAGES, SAMPLE_CLIPS = (".jpg", ".jpeg", ".png"), (".mp4",)


@dataclass(frozen=True)
class Engine:
    """A generator with the landmark net and look loss that go with it, as animate config keys.

    ``tuned``: per mode, the settings measured for this generator, laid over the mode's own preset (a preset
    the user picks by name is run as it is).
    """

    label: str
    overrides: dict[str, object]
    offline: bool  # everything it needs was on disk before any download (shared/models)
    tuned: dict[str, dict[str, object]] = field(default_factory=dict)


def _cached(name: str) -> str | None:
    """The cached file of registry entry ``name``, if present (never downloads)."""
    path = weights.cache_path(weights.lookup(name))
    return str(path) if path.is_file() else None


def engines(shared: Path = SHARED) -> list[Engine]:
    """The network sets that load here, StyleGAN2 first when its weights are cached."""
    models = shared / "models"
    mesh = str(models / MESH_FILE) if (models / MESH_FILE).is_file() else _cached(weights.DEFAULTS["mesh"])
    fan, lpips = _cached(weights.DEFAULTS["fan"]), _cached(weights.DEFAULTS["lpips"])
    found: list[Engine] = []
    for name, entry in weights.REGISTRY.items():
        if entry.kind != "stylegan2" or _cached(name) is None or (fan is None and mesh is None):
            continue
        net, net_weights = ("fan", fan) if fan is not None else ("mesh", mesh)
        found.append(Engine(
            f"StyleGAN2 {name} + {'FAN' if net == 'fan' else 'face mesh'} (cached weights)",
            {"network": name, "landmarks.net": net, "landmarks.weights": net_weights,
             "look_loss": "lpips" if lpips is not None else "msssim"}, offline=False))
    if (models / DCGAN_FILE).is_file() and mesh is not None:
        found.append(Engine(
            "DCGAN 64² (DigiFace) + face mesh — works offline",
            {"network": str(models / DCGAN_FILE), "space": "w", "landmarks.net": "mesh",
             "landmarks.weights": mesh, "look_loss": "msssim"}, offline=True,
            tuned={"keep-identity": DCGAN_KEEP_IDENTITY}))
    return found


def samples(shared: Path = SHARED) -> tuple[list[Path], list[Path]]:
    """The bundled sample look images and driving clips (empty lists when ``shared/media`` is absent)."""
    media = shared / "media"
    if not media.is_dir():
        return [], []
    files = sorted(p for p in media.iterdir() if p.is_file())
    return ([p for p in files if p.suffix.lower() in SAMPLE_IMAGES],
            [p for p in files if p.suffix.lower() in SAMPLE_CLIPS])
