"""Batches on a local Ray with 2 CPUs and tiny untrained networks: a bad job fails alone, the manifest says what
happened, a re-run skips what finished, and an interrupted batch resumes."""

import json
import logging
from pathlib import Path

import av
import pytest

from stylepuppet.animation.run import animate
from stylepuppet.batches import runner
from stylepuppet.batches.jobs import plan_jobs
from stylepuppet.batches.manifest import FIGURES
from stylepuppet.batches.runner import run_batch
from stylepuppet.errors import ConfigError
from stylepuppet.optim.projector import Projector

ray = pytest.importorskip("ray")

SETTINGS = """
[settings]
mode = "free"
untrained = true
start_candidates = 0
start_rehearsal = 0
max_frames = 3  # evaluate judges runs of 3 frames or more
subframes = 1
[settings.loss]
identity = 0.0  # the free preset's identity term needs a face its chip can frame; untrained networks draw none
[settings.landmarks]
net = "mesh"
[settings.schedule]
steps_first = 2
steps = 1
"""


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray (2 CPUs) for the module; its workers see a private weights cache."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLEPUPPET_CACHE", str(cache))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        try:
            yield
        finally:
            ray.shutdown()


def batch_file(folder: Path, media_dir: Path, extra: str = "") -> Path:
    (folder / "broken.mp4").write_text("not a video")
    path = folder / "jobs.toml"
    path.write_text(f'driving = ["{media_dir}/d0.mp4", "{media_dir}/d3.mp4", "broken.mp4"]\n{SETTINGS}{extra}')
    return path


def frames_of(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_bad_job_fails_alone_the_manifest_says_so_and_a_rerun_skips_what_finished(local_ray, media_dir, tmp_path):
    path = batch_file(tmp_path, media_dir)
    out = tmp_path / "out"
    result = run_batch(path, out, evaluate=True, progress=False)
    status = {r.name: r for r in result.records}
    assert [r.name for r in result.records] == ["d0", "d3", "broken"]
    assert status["d0"].status == status["d3"].status == "done" and status["broken"].status == "failed"
    assert "cannot read" in status["broken"].error and "broken.mp4" in status["broken"].error
    assert "\n" not in status["broken"].error
    for name in ("d0", "d3"):
        assert status[name].frames == 3 and status[name].seconds > 0 and status[name].error == ""
        assert "UNTRAINED" in status[name].note
        assert set(status[name].figures) == set(FIGURES)
        assert frames_of(out / name / "animation.mp4") == 3
    data = json.loads((out / "batch.json").read_text())
    assert data["counts"] == {"pending": 0, "running": 0, "done": 2, "failed": 1, "interrupted": 0}
    assert [j["driving"] for j in data["jobs"]] == [str(media_dir / "d0.mp4"), str(media_dir / "d3.mp4"),
                                                    str(tmp_path / "broken.mp4")]
    rows = (out / "batch.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[3].startswith("broken,failed,")

    before = (out / "d0" / "animation.mp4").stat().st_mtime_ns
    again = run_batch(path, out, evaluate=True, progress=False)
    assert again.skipped == 2 and [r.status for r in again.records] == ["done", "done", "failed"]
    assert (out / "d0" / "animation.mp4").stat().st_mtime_ns == before  # not run again
    assert "2 done (2 finished before), 1 failed (broken)" in again.summary()


def test_an_interrupted_batch_stops_cleanly_and_resumes(local_ray, media_dir, tmp_path, monkeypatch):
    path = batch_file(tmp_path, media_dir, "\n[jobs.d3]\nmax_frames = 8\n")
    out = tmp_path / "out"
    # d0 was interrupted before, after 1 of its 3 frames.
    d0 = plan_jobs(path)[0]
    project = Projector.project

    class Killed(Exception):
        pass

    def dies_at_frame_1(self, index, *args, **kwargs):
        if index == 1:
            raise Killed
        return project(self, index, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(Projector, "project", dies_at_frame_1)
        with pytest.warns(UserWarning, match="UNTRAINED"), pytest.raises(Killed):
            animate(d0.config, d0.driving, out / "d0", progress=False)

    # Ctrl-C as soon as the first job finishes (d0, one frame to go), while d3 (8 frames) is running.
    write = runner.write_manifest

    def interrupt_after_a_job(folder, source, records):
        write(folder, source, records)
        if any(r.status == "done" for r in records):
            raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(runner, "write_manifest", interrupt_after_a_job)
        with pytest.raises(KeyboardInterrupt):
            run_batch(path, out, jobs=2, progress=False)
    jobs = {j["name"]: j for j in json.loads((out / "batch.json").read_text())["jobs"]}
    assert jobs["d0"]["status"] == "done" and jobs["d0"]["resumed_from"] == 1
    assert jobs["d3"]["status"] == "interrupted" and jobs["broken"]["status"] in ("pending", "interrupted", "failed")
    leftovers = [p.name for p in out.rglob(".*") if p.is_file()]
    assert leftovers == []  # no temporary files left behind
    for video in out.rglob("*.mp4"):
        assert frames_of(video) > 0  # whatever has a final name is whole

    result = run_batch(path, out, jobs=2, progress=False)
    assert [r.status for r in result.records] == ["done", "done", "failed"] and result.skipped == 1
    assert result.records[1].frames == 8
    assert frames_of(out / "d3" / "animation.mp4") == 8


def test_cuda_jobs_on_a_ray_without_gpus_are_one_clear_error(local_ray, media_dir, tmp_path):
    with pytest.raises(ConfigError, match="the jobs ask for cuda but this Ray has no GPU"):
        run_batch(batch_file(tmp_path, media_dir), tmp_path / "out", progress=False, device="cuda")
