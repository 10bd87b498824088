"""A batch file -> its jobs (no Ray needed): looks × clips, globs, shared settings, per-job overrides, errors."""

import json

import pytest

from stylepuppet.animation.outputs import OUTPUTS
from stylepuppet.batches.jobs import plan_jobs
from stylepuppet.batches.manifest import JobRecord, read_manifest, write_manifest
from stylepuppet.batches.runner import finished, load_ray
from stylepuppet.cli import run
from stylepuppet.errors import ConfigError, StylePuppetError


@pytest.fixture
def files(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.png", "x.mp4", "y.mp4"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    return tmp_path


def write(folder, text):
    path = folder / "jobs.toml"
    path.write_text(text)
    return path


def test_jobs_are_looks_times_clips_named_by_their_files_with_globs_relative_to_the_batch_file(files):
    path = write(files, 'looks = ["in/*.jpg", "in/c.png"]\ndriving = ["in/y.mp4", "in/x.mp4"]\n'
                        '[settings]\nmax_frames = 5\nlook_loss = "msssim"\n')
    jobs = plan_jobs(path)
    assert [j.name for j in jobs] == ["a_y", "a_x", "b_y", "b_x", "c_y", "c_x"]
    assert jobs[0].look == files / "in" / "a.jpg" and jobs[0].driving == files / "in" / "y.mp4"
    assert all(j.config.max_frames == 5 and j.config.look_loss == "msssim" for j in jobs)
    assert all(j.config.preset == "keep-identity" for j in jobs)


def test_per_job_overrides_by_name_or_glob_apply_in_order_and_the_command_line_wins(files):
    path = write(files, 'looks = ["in/a.jpg", "in/b.jpg"]\ndriving = "in/x.mp4"\n'
                        '[settings]\npreset = "quick"\nseed = 1\n[settings.landmarks]\ngroups = "mouth=7"\n'
                        '[jobs."*_x"]\nseed = 2\n[jobs.b_x]\nseed = 3\n[jobs.b_x.landmarks]\ngroups = "eyes=0"\n')
    a, b = plan_jobs(path)
    assert (a.config.preset, a.config.seed, b.config.seed) == ("quick", 2, 3)
    assert b.config.landmarks.groups["outer_lip"] == 7 and b.config.landmarks.groups["right_eye"] == 0
    assert a.config.landmarks.groups["right_eye"] == 1
    a, b = plan_jobs(path, **{"seed": 9, "schedule.steps": 4, "max_frames": None})
    assert (a.config.seed, b.config.seed, b.config.schedule.steps) == (9, 9, 4)
    assert a.digest != b.digest and plan_jobs(path)[0].digest != a.digest


def test_free_mode_jobs_have_no_look_and_a_job_may_pick_its_own_preset(files):
    path = write(files, 'driving = ["in/*.mp4"]\n[settings]\nmode = "free"\n[jobs.y]\npreset = "fast"\n'
                        'mode = "keep-identity"\n')
    x, y = plan_jobs(path)
    assert (x.name, x.look, x.config.preset, x.config.mode) == ("x", None, "free", "free")
    assert (y.config.preset, y.config.mode) == ("fast", "keep-identity")


@pytest.mark.parametrize(("text", "message"), [
    ('driving = ["in/z*.mp4"]\n', "matches no file"),
    ('looks = ["in/a.jpg", "in/b.jpg"]\ndriving = ["in/x.mp4", "other/x.mp4"]\n', "would be named 'a_x'"),
    ('driving = ["in/x.mp4"]\n[jobs.nope]\nseed = 1\n', r"\[jobs.nope\] names no job .*; its jobs are: x"),
    ('driving = ["in/x.mp4"]\nseed = 1\n', "unknown key 'seed'.*settings go in the \\[settings\\] table"),
    ('looks = ["in/a.jpg"]\n', "names no driving clips"),
    ('driving = ["in/x.mp4"]\n[settings]\nmax_frames = 0\n', "job x: max_frames: must be >= 1"),
    ('driving = ["in/x.mp4"]\n[settings.loss]\nbogus = 1\n', "unknown config key 'loss.bogus'"),
    ('driving = 3\n', "driving: must be a file path, a glob or a list"),
    ('driving = [\n', "not valid TOML"),
])
def test_a_bad_batch_file_is_one_clear_error(files, text, message):
    with pytest.raises(ConfigError, match=message):
        plan_jobs(write(files, text))


def test_a_missing_file_is_left_to_its_job_and_a_missing_batch_file_is_an_error(files):
    (job,) = plan_jobs(write(files, 'driving = "in/gone.mp4"\n'))
    assert job.driving == files / "in" / "gone.mp4"
    with pytest.raises(ConfigError, match="batch file not found"):
        plan_jobs(files / "none.toml")


def test_the_manifest_round_trips_and_its_table_has_a_row_per_job(tmp_path):
    done = JobRecord("a_x", "x.mp4", "a.jpg", "d1", status="done", seconds=12.345, frames=40,
                     figures={"correlation": 0.8, "walk_p95": float("nan")})
    failed = JobRecord("b_x", "x.mp4", "b.jpg", "d2", status="failed", error="no face found in b.jpg")
    write_manifest(tmp_path, tmp_path / "jobs.toml", [done, failed])
    data = json.loads((tmp_path / "batch.json").read_text())
    assert data["counts"]["done"] == 1 and data["counts"]["failed"] == 1
    assert data["jobs"][0]["figures"] == {"correlation": 0.8, "walk_p95": None}  # JSON has no NaN
    again = read_manifest(tmp_path)
    assert again["b_x"] == failed and again["a_x"].frames == 40 and again["a_x"].figures["correlation"] == 0.8
    lines = (tmp_path / "batch.csv").read_text().splitlines()
    assert lines[0].startswith("name,status,look,driving,seconds,frames,resumed_from,correlation,")
    assert lines[1].startswith("a_x,done,a.jpg,x.mp4,12.3,40,0,0.8,") and lines[2].endswith("no face found in b.jpg,")
    assert read_manifest(tmp_path / "none") == {}


def test_a_job_counts_as_finished_only_with_its_settings_inputs_and_outputs(files):
    (job,) = plan_jobs(write(files, 'driving = "in/x.mp4"\n[settings]\nmode = "free"\n'))
    folder = files / "out" / job.name
    folder.mkdir(parents=True)
    record = JobRecord.of(job)
    record.status = "done"
    assert not finished(record, job, folder, evaluate=False)  # no outputs yet
    for output in OUTPUTS:
        if output.write is not None and (output.wanted is None or output.wanted(job.config)):
            (folder / output.name).write_bytes(b"")
    assert finished(record, job, folder, evaluate=False)
    assert not finished(record, job, folder, evaluate=True)  # asked for figures it has not got
    record.digest = "other"
    assert not finished(record, job, folder, evaluate=False)


def test_without_ray_a_batch_says_how_to_install_it(files, monkeypatch, capsys):
    real = __import__("importlib").import_module

    def no_ray(name, *args):
        if name == "ray":
            raise ModuleNotFoundError("No module named 'ray'")
        return real(name, *args)

    monkeypatch.setattr("importlib.import_module", no_ray)
    with pytest.raises(StylePuppetError, match=r"pip install 'stylepuppet\[batch\]'"):
        load_ray()
    assert run(["batch", str(write(files, 'driving = "in/x.mp4"\n')), "-o", str(files / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: batches run on Ray, which is not installed; install it with pip install "
                   "'stylepuppet[batch]'"]
