"""A batch file: looks × driving clips, shared settings, per-job overrides -> a list of animate jobs.

Layout (TOML; paths are relative to the batch file's folder, globs are expanded and sorted)::

    looks = ["portraits/*.jpg"]          # omit in free mode
    driving = ["clips/d0.mp4", "clips/d3.mp4"]

    [settings]                           # shared: every key of a --config file, preset included
    preset = "keep-identity"
    max_frames = 80

    [jobs."s1_*"]                        # per-job overrides: a job name or a glob over job names
    seed = 3
    [jobs.s3_d0.loss]
    landmark = 200.0

A job is named ``<look stem>_<driving stem>`` (``<driving stem>`` without looks) and runs in
``OUT/<name>/`` as an ordinary ``animate`` run. Overrides apply in the file's order, later ones winning.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from stylepuppet.config import AnimateConfig, apply_overrides, flatten_settings, load_toml, resolve_config
from stylepuppet.errors import ConfigError

#: The keys a batch file may hold at its top level.
TOP_KEYS = ("looks", "driving", "settings", "jobs")


@dataclass(frozen=True)
class Job:
    """One animate run of a batch: its name (its folder under OUT), inputs and resolved settings."""

    name: str
    driving: Path
    look: Path | None
    config: AnimateConfig

    @property
    def digest(self) -> str:
        """What decides the job's results: its settings and its input paths (a changed job is not skipped)."""
        text = f"{self.config.to_json()}|{self.driving}|{self.look}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _paths(value: Any, key: str, base: Path) -> list[Path]:
    """A list (or one string) of paths and globs relative to ``base`` -> the files, in order, without repeats."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{key}: must be a file path, a glob or a list of them, got {value!r}")
    found: list[Path] = []
    for item in items:
        pattern = str(base / Path(item).expanduser())
        if glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise ConfigError(f"{key}: {item!r} matches no file (relative to {base})")
        else:
            matches = [Path(pattern)]  # a missing file fails its job alone, with the job's error
        found.extend(m for m in matches if m not in found)
    return found


def read_batch(path: str | Path) -> dict[str, Any]:
    """The batch file's table (ConfigError if missing, unparsable or holding unknown keys)."""
    path = Path(path)
    table = load_toml(path, "batch file")
    unknown = sorted(set(table) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in batch file {path}; valid keys: {', '.join(TOP_KEYS)} "
                          "(settings go in the [settings] table)")
    if "driving" not in table:
        raise ConfigError(f"batch file {path} names no driving clips: add driving = [\"clip.mp4\", ...]")
    return table


def job_name(look: Path | None, driving: Path) -> str:
    return driving.stem if look is None else f"{look.stem}_{driving.stem}"


def plan_jobs(path: str | Path, **overrides: Any) -> list[Job]:
    """The jobs of a batch file: looks × driving clips with the shared settings, then each job's overrides,
    then ``overrides`` (dotted setting keys, None values skipped, e.g. from command-line flags).

    ConfigError for a bad file, a glob that matches nothing, two jobs with one name, an override naming
    no job, or a job's settings that do not check (naming the job).
    """
    path = Path(path)
    table = read_batch(path)
    base = path.parent
    drivers = _paths(table["driving"], "driving", base)
    looks: list[Path | None] = _paths(table["looks"], "looks", base) if "looks" in table else [None]
    settings = table.get("settings", {})
    per_job = table.get("jobs", {})
    for key, value in (("settings", settings), ("jobs", per_job)):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: must be a table, got {value!r}")
    shared = flatten_settings(settings, f"[settings] of {path}")
    cli = {k: v for k, v in overrides.items() if v is not None}
    pairs = [(look, driving) for look in looks for driving in drivers]
    names = [job_name(look, driving) for look, driving in pairs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two jobs would be named {name!r} (the same file name in two folders); rename one")
    changes: dict[str, dict[str, Any]] = {name: {} for name in names}
    for pattern, values in per_job.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"jobs.{pattern}: must be a table of settings, got {values!r}")
        chosen = [name for name in names if fnmatchcase(name, pattern)]
        if not chosen:
            raise ConfigError(f"[jobs.{pattern}] names no job of {path}; its jobs are: {', '.join(names)}")
        flat = flatten_settings(values, f"[jobs.{pattern}] of {path}")
        for name in chosen:
            changes[name].update(flat)
    jobs = []
    for (look, driving), name in zip(pairs, names):
        try:
            cfg = layered_config([shared, changes[name], cli])
        except ConfigError as exc:
            raise ConfigError(f"job {name}: {exc}") from None
        jobs.append(Job(name, driving, look, cfg))
    return jobs


def layered_config(layers: list[dict[str, Any]]) -> AnimateConfig:
    """Settings layers (dotted keys), later ones winning: the last preset named (or the last mode's default
    preset) first, then each layer in turn, so group weights merge layer by layer as they do from a file."""
    preset = next((layer["preset"] for layer in reversed(layers) if "preset" in layer), None)
    mode = next((layer["mode"] for layer in reversed(layers) if "mode" in layer), None)
    cfg = resolve_config(preset, None, {"mode": mode})
    for layer in layers:
        cfg = apply_overrides(cfg, {k: v for k, v in layer.items() if k != "preset"})
    return cfg
