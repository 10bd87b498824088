"""The batch manifest: per job its inputs, status, wall time, frames, error line and evaluation figures,
in ``OUT/batch.json`` and ``OUT/batch.csv``, rewritten atomically whenever a job's status changes."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stylepuppet import atomic
from stylepuppet.batches.jobs import Job

MANIFEST, TABLE = "batch.json", "batch.csv"
#: A job's status: waiting, running, finished, failed with an error line, or stopped by Ctrl-C.
STATUSES = ("pending", "running", "done", "failed", "interrupted")
#: The evaluation figures recorded per job with ``--evaluate`` (names of the CSV's columns).
FIGURES = ("correlation", "walk_median", "walk_p95", "identity_drift_median", "identity_drift_max", "output_jitter",
           "driver_jitter", "frames_without_face")


@dataclass
class JobRecord:
    """One row of the manifest."""

    name: str
    driving: str
    look: str
    digest: str  # Job.digest of the settings and inputs it ran with
    status: str = "pending"
    error: str = ""
    seconds: float = 0.0  # wall time of the job's last attempt
    frames: int = 0
    resumed_from: int = 0  # frames a resumed run found done
    note: str = ""  # e.g. untrained networks stood in
    figures: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, job: Job) -> JobRecord:
        return cls(job.name, str(job.driving), "" if job.look is None else str(job.look), job.digest)


def _plain(value: float) -> float | None:
    """JSON has no NaN: a missing figure is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_manifest(out: Path, source: Path, records: list[JobRecord]) -> None:
    """OUT/batch.json (the batch file, counts per status, one entry per job) and OUT/batch.csv (one row
    per job), each replaced atomically."""
    counts = {status: sum(r.status == status for r in records) for status in STATUSES}
    entries = []
    for record in records:
        entry = asdict(record)
        entry["figures"] = {k: _plain(v) for k, v in record.figures.items()}
        entries.append(entry)
    atomic.write_text(out / MANIFEST, json.dumps({"batch": str(source), "counts": counts, "jobs": entries},
                                                 indent=2) + "\n")
    columns = ["name", "status", "look", "driving", "seconds", "frames", "resumed_from", *FIGURES, "error", "note"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        row: dict[str, Any] = {**asdict(record), **record.figures}
        row["seconds"] = f"{record.seconds:.1f}"
        writer.writerow(row)
    atomic.write_text(out / TABLE, buffer.getvalue())


def read_manifest(out: Path) -> dict[str, JobRecord]:
    """The records of an earlier run of the batch into ``out`` by job name (none when there is no readable one)."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return {e["name"]: JobRecord(**{**e, "figures": {k: float("nan") if v is None else v
                                                          for k, v in e.get("figures", {}).items()}})
                for e in data["jobs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
