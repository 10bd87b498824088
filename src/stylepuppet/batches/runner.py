"""Run a batch's jobs on Ray: each job an ordinary ``animate`` run in ``OUT/<job name>/``.

Ray is an optional extra (``pip install 'stylepuppet[batch]'``): a local Ray is started with room for
``jobs`` jobs at ``threads`` torch threads each, or ``address`` joins an existing cluster (every node
must see the input files and OUT, e.g. on a shared file system); a job asks for one GPU when its
device is ``cuda``. A job that fails (no face, an unreadable file, a bad setting) fails alone: its
error line goes into the manifest and the others go on. The manifest is rewritten whenever a job
changes status, so it is right even after a crash.

Running the same batch again skips the jobs that finished with the same settings and inputs (and
whose outputs are all there) and resumes the others, each from its own saved state. Ctrl-C cancels
the running jobs (each stops as an interrupted ``animate`` run does: no half-written file under a
final name), records them as interrupted, and re-raises.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from stylepuppet.animation.folder import LOCK
from stylepuppet.animation.outputs import OUTPUTS
from stylepuppet.animation.run import animate
from stylepuppet.batches.jobs import Job, plan_jobs
from stylepuppet.batches.manifest import MANIFEST, JobRecord, read_manifest, write_manifest
from stylepuppet.errors import ConfigError, StylePuppetError
from stylepuppet.evaluation.report import Evaluation, evaluate_output
from stylepuppet.lock import released

#: How long Ctrl-C waits for cancelled jobs to unwind (remove their temporary files) before leaving.
CANCEL_WAIT = 30.0
#: The longest error line recorded for a job that raised something other than a StylePuppetError.
MESSAGE_LIMIT = 300


def load_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise StylePuppetError("batches run on Ray, which is not installed; install it with "
                               "pip install 'stylepuppet[batch]'") from None


def one_line(exc: BaseException) -> str:
    """An exception as one line: the message of a StylePuppetError, else its type and the first sentence of
    its message (Ray's own errors run to pages)."""
    if isinstance(exc, StylePuppetError):
        return " ".join(str(exc).split())
    text = " ".join(str(exc).split())
    cut = text.find(". ")
    return f"{type(exc).__name__}: {text if cut < 0 else text[:cut + 1]}"[:MESSAGE_LIMIT]


def figures(evaluation: Evaluation) -> dict[str, float]:
    """The manifest's evaluation figures (names in :data:`~stylepuppet.batches.manifest.FIGURES`)."""
    drift = evaluation.identity_distance[np.isfinite(evaluation.identity_distance)]
    return {"correlation": float(evaluation.correlation), "walk_median": evaluation.walk_median,
            "walk_p95": evaluation.walk_p95,
            "identity_drift_median": float(np.median(drift)) if drift.size else float("nan"),
            "identity_drift_max": float(drift.max()) if drift.size else float("nan"),
            "output_jitter": evaluation.output_jitter, "driver_jitter": evaluation.driver_jitter,
            "frames_without_face": float(np.sum(~evaluation.output.found))}


def run_job(job: Job, folder: Path, threads: int, evaluate: bool) -> dict[str, Any]:
    """One job in a Ray worker: animate (resuming what is there), then evaluate if asked. Returns the fields
    of its manifest record that changed; a failure becomes its error line, never an exception."""
    torch.set_num_threads(threads)
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained stand-ins are recorded in the summary below, not printed
        try:
            result = animate(job.config, job.driving, folder, look=job.look, progress=False)
        except Exception as exc:  # a failing job fails alone
            return {"status": "failed", "error": one_line(exc), "seconds": time.perf_counter() - began}
        record: dict[str, Any] = {"status": "done", "error": "", "frames": result.frames,
                                  "resumed_from": result.resumed_from, "figures": {}}
        if result.untrained:
            record["note"] = f"UNTRAINED networks stood in: {', '.join(result.untrained)}"
        if evaluate:
            try:
                record["figures"] = figures(evaluate_output(folder, job.driving))
            except Exception as exc:
                record["error"] = f"evaluation failed: {one_line(exc)}"
    record["seconds"] = time.perf_counter() - began
    return record


def finished(record: JobRecord | None, job: Job, folder: Path, evaluate: bool) -> bool:
    """Whether an earlier run of this very job finished: same settings and inputs, every output there, and
    the figures if they are asked for."""
    if record is None or record.status != "done" or record.digest != job.digest:
        return False
    if evaluate and not record.figures:
        return False
    wanted = [o.name for o in OUTPUTS if o.write is not None and (o.wanted is None or o.wanted(job.config))]
    return all((folder / name).exists() for name in wanted)


@dataclass(frozen=True)
class BatchResult:
    """A batch's records (one per job, in the batch's order) and how many were skipped as already finished."""

    out: Path
    records: list[JobRecord]
    skipped: int

    @property
    def failed(self) -> list[JobRecord]:
        return [r for r in self.records if r.status == "failed"]

    def summary(self) -> str:
        done = sum(r.status == "done" for r in self.records)
        skipped = f" ({self.skipped} finished before)" if self.skipped else ""
        failed = f", {len(self.failed)} failed ({', '.join(r.name for r in self.failed)})" if self.failed else ""
        return f"{len(self.records)} jobs: {done} done{skipped}{failed}; manifest in {self.out / MANIFEST}"


def _start_ray(ray: ModuleType, address: str | None, cpus: int) -> bool:
    """Connect to Ray (an existing cluster, the Ray this process already runs, or a new local one with ``cpus``
    CPUs and the GPUs it finds). Returns whether this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is not None:
            ray.init(address=address, **options)
        else:
            # A local Ray shares the machine: its memory monitor would kill our jobs for what other programs use
            # (it did, at 95 % of the memory, most of it another program's); the kernel's limits stay.
            os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
            ray.init(num_cpus=cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise StylePuppetError(f"cannot start {where} ({one_line(exc)})") from None
    return True


def run_batch(path: str | Path, out: str | Path, *, jobs: int | None = None, threads: int = 1,
              address: str | None = None, evaluate: bool = False, progress: bool = True,
              **overrides: Any) -> BatchResult:
    """Run (or resume) the batch file ``path`` into ``out``; see the module docstring.

    ``jobs``: jobs at a time (default: as many as the machine's cores allow at ``threads`` each; all at once
    on a cluster, which schedules them). ``overrides``: dotted setting keys applied to every job.
    """
    if threads < 1 or (jobs is not None and jobs < 1):
        raise ConfigError(f"jobs and threads must be at least 1, got jobs={jobs} threads={threads}")
    path, out = Path(path), Path(out)
    plan = plan_jobs(path, **overrides)
    ray = load_ray()
    out.mkdir(parents=True, exist_ok=True)
    earlier = read_manifest(out)
    records, todo = [], []
    for job in plan:
        old = earlier.get(job.name)
        if old is not None and finished(old, job, out / job.name, evaluate):
            records.append(old)
        else:
            records.append(JobRecord.of(job))
            todo.append(len(records) - 1)
    skipped = len(plan) - len(todo)
    write_manifest(out, path, records)
    limit = jobs if jobs is not None else (None if address else max(1, (os.cpu_count() or 1) // threads))
    started = _start_ray(ray, address, (limit or 1) * threads) if todo else False
    bar = tqdm(total=len(plan), initial=skipped, unit="job", desc="batch", disable=not progress)
    running: dict[Any, int] = {}
    try:
        if any(plan[i].config.device == "cuda" for i in todo) and not ray.cluster_resources().get("GPU"):
            raise ConfigError("device: the jobs ask for cuda but this Ray has no GPU; run them with --device cpu, "
                              "or join a cluster with GPUs (--address)")
        if todo:
            task = ray.remote(run_job)
            queue = list(todo)
            while queue or running:
                while queue and (limit is None or len(running) < limit):
                    i = queue.pop(0)
                    job = plan[i]
                    gpus = 1 if job.config.device == "cuda" else 0
                    ref = task.options(num_cpus=threads, num_gpus=gpus, max_retries=0).remote(
                        job, out / job.name, threads, evaluate)
                    running[ref] = i
                    records[i].status = "running"
                write_manifest(out, path, records)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    i = running.pop(ref)
                    try:
                        fields = ray.get(ref)
                    except Exception as exc:  # the worker died (out of memory, killed): its state is kept
                        fields = {"status": "failed", "error": f"the job's worker died ({one_line(exc)}); "
                                                               "running the batch again resumes it"}
                    for key, value in fields.items():
                        setattr(records[i], key, value)
                    write_manifest(out, path, records)
                    bar.set_postfix_str(f"{records[i].name} {records[i].status}")
                    bar.update(1)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)
        deadline = time.monotonic() + CANCEL_WAIT
        ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT)
        for i in running.values():
            records[i].status = "interrupted"
            released(out / plan[i].name / LOCK, deadline - time.monotonic())  # the worker has unwound
        write_manifest(out, path, records)
        raise
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return BatchResult(out, records, skipped)
