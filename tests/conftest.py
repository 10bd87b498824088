"""Shared fixtures: small threads for tiny networks, and the read-only real media beside the repo."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    """The workplace's read-only ``shared/`` folder: beside this checkout, or beside the repository it was
    cloned from (a CI clone elsewhere, e.g. ``git clone /work/main /tmp/ci-check``)."""
    beside = REPO.parent / "shared"
    if beside.is_dir():
        return beside
    origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return Path(origin).parent / "shared" if origin and Path(origin).is_dir() else beside


SHARED = _shared()


@pytest.fixture(scope="session")
def media_dir() -> Path:
    path = SHARED / "media"
    assert path.is_dir(), f"real test media expected at {path} (the workplace's shared/ beside the repo)"
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = SHARED / "models"
    assert path.is_dir(), f"real pretrained test networks expected at {path}"
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures a test recorded (``record_property("figures", text)``) after the run, passed or failed:
    the proofs on real faces report what they measured, also from pytest-xdist's workers."""
    reports = [r for key in ("passed", "failed") for r in terminalreporter.getreports(key) if r.when == "call"]
    recorded = [(r.nodeid, value) for r in reports for name, value in r.user_properties if name == "figures"]
    if recorded:
        terminalreporter.section("figures measured")
        for nodeid, text in recorded:
            terminalreporter.write_line(f"{nodeid}\n    {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's ``worksteal`` (each of N workers starts with one contiguous share of the tests, in
    collection order), the slow tests head the shares, the longest first, spread so every worker gets about the
    same slow minutes (``@pytest.mark.slow(minutes=M)``, default 1): the real-face proofs then run side by side
    instead of one after the other at the end of one worker's share."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = sorted((i for i in items if i.get_closest_marker("slow")),
                  key=lambda i: -i.get_closest_marker("slow").kwargs.get("minutes", 1))
    fast = [i for i in items if not i.get_closest_marker("slow")]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for item in slow:
        k = load.index(min(load))
        heads[k].append(item)
        load[k] += item.get_closest_marker("slow").kwargs.get("minutes", 1)
    ordered: list[pytest.Item] = []
    left = len(items)
    for k in range(workers):
        size = left // (workers - k)  # worksteal's initial split
        left -= size
        take = max(0, size - len(heads[k]))
        ordered += heads[k] + fast[:take]
        fast = fast[take:]
    items[:] = ordered + fast
