"""Runs from the browser app without a browser: folders per tab, settings files, networks on offer, cancel."""

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylepuppet.animation.state import STATE, RunState
from stylepuppet.config import DCGAN_KEEP_IDENTITY, resolve_config
from stylepuppet.ui import choices
from stylepuppet.ui.app import optional_number, overrides_of
from stylepuppet.ui.jobs import RUN_TOML, Job, RunRequest, prepare_folder, resume_command, run_toml, session_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    path.mkdir()
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(path))
    return path


@pytest.fixture
def offline_engine(models_dir):
    engine = next(e for e in choices.engines(models_dir.parent) if e.offline)
    return engine


def test_each_tab_and_each_setting_gets_its_own_folder_and_a_repeat_the_same(media_dir, tmp_path):
    request = RunRequest(media_dir / "d3.mp4", media_dir / "s1.jpg", None, {"mode": "keep-identity", "max_frames": 3})
    first = session_folder(tmp_path, "tab-A/../x", request)
    assert first.parent == tmp_path and "/" not in first.name and ".." not in first.name
    assert session_folder(tmp_path, "tab-A/../x", request) == first  # the same run again: resumes there
    assert session_folder(tmp_path, "tab-B", request) != first  # another tab never shares it
    other = RunRequest(media_dir / "d3.mp4", media_dir / "s1.jpg", None, {"mode": "keep-identity", "max_frames": 4})
    assert session_folder(tmp_path, "tab-A/../x", other) != first
    swapped = RunRequest(media_dir / "d0.mp4", media_dir / "s1.jpg", None, request.overrides)
    assert session_folder(tmp_path, "tab-A/../x", swapped) != first


def test_the_settings_file_resolves_to_the_pages_config(tmp_path):
    overrides = {"mode": "free", "network": '/a "quoted" path/G.pt', "space": "w", "landmarks.groups": "mouth=5,eyes=0",
                 "loss.landmark": 250.0, "schedule.steps": 7, "max_frames": 3}
    path = tmp_path / RUN_TOML
    path.write_text(run_toml("fast", overrides))
    assert resolve_config(config_file=path) == resolve_config("fast", None, overrides)
    path.write_text(run_toml(None, overrides))
    assert resolve_config(config_file=path) == resolve_config(None, None, overrides)


def test_prepare_folder_keeps_copies_of_the_inputs_and_says_how_to_resume(media_dir, tmp_path):
    request = RunRequest(media_dir / "d0.mp4", media_dir / "s1.jpg", "quick", {"max_frames": 2})
    folder = tmp_path / "run"
    kept = prepare_folder(folder, request)
    assert kept.driving == folder / "inputs" / "driving.mp4" and kept.look == folder / "inputs" / "look.jpg"
    assert kept.driving.read_bytes() == request.driving.read_bytes()
    assert resolve_config(config_file=folder / RUN_TOML) == resolve_config("quick", None, {"max_frames": 2})
    assert resume_command(folder, kept) == (f"stylepuppet animate --config {folder / RUN_TOML} "
                                            f"--driving {kept.driving} --look {kept.look} --evaluate -o {folder}")


def test_page_fields_become_config_keys_and_bad_numbers_are_named(offline_engine):
    keys = overrides_of(offline_engine, "free", "", 3, 0, {"look": "", "landmark": " 250 ", "smoothness": None,
                                                        "fidelity": "0.5"}, " mouth=5 ", "6", "")
    assert keys == {**offline_engine.overrides, "mode": "free", "max_frames": 3, "start": 0,
                    "schedule.steps_first": 6, "loss.landmark": 250.0, "loss.fidelity": 0.5,
                    "landmarks.groups": "mouth=5"}
    with pytest.raises(ValueError, match="λ look: 'abc' is not a number"):
        optional_number("abc", float, "λ look")
    with pytest.raises(ValueError, match="steps, later frames: must be 0 or more"):
        optional_number("-2", int, "steps, later frames")


def test_keep_identity_on_the_offline_engine_runs_the_settings_measured_for_the_dcgan(offline_engine):
    def config(preset: str, landmark: str = ""):
        keys = overrides_of(offline_engine, "keep-identity", preset, 3, None,
                            {"look": "", "landmark": landmark, "smoothness": "", "fidelity": ""}, "", "", "")
        return resolve_config(preset or None, None, keys)

    own = config("")
    assert (own.preset, own.loss.landmark, own.loss.fidelity, own.schedule.steps) == ("keep-identity", 1500.0, 1.0, 30)
    assert own.start_candidates == 64 and own.landmarks.jitter_count == 1
    assert config("", landmark="700").loss.landmark == 700.0  # the page's fields still win
    named = config("keep-identity")  # a preset picked by name runs as it is
    assert (named.loss.landmark, named.loss.fidelity) == (300.0, 0.05)
    free = overrides_of(offline_engine, "free", "", 3, None, {}, "", "", "")
    assert not set(DCGAN_KEEP_IDENTITY) & set(free)  # free mode's own preset is the one tuned on the DCGAN


def test_networks_on_offer(tmp_path, cache, models_dir):
    shared = tmp_path / "shared"
    assert choices.engines(shared) == [] and choices.samples(shared) == ([], [])
    (shared / "models").mkdir(parents=True)
    for name in (choices.DCGAN_FILE, choices.MESH_FILE):
        (shared / "models" / name).write_bytes(b"x")
    only = choices.engines(shared)
    assert [e.offline for e in only] == [True]
    assert only[0].overrides["landmarks.net"] == "mesh" and only[0].overrides["space"] == "w"
    (cache / "stylegan2-ffhq-256x256.pkl").write_bytes(b"x")  # registry weights in the cache
    both = choices.engines(shared)
    assert [e.offline for e in both] == [False, True]
    assert both[0].overrides == {"network": "stylegan2-ffhq-256", "landmarks.net": "mesh",
                                 "landmarks.weights": str(shared / "models" / choices.MESH_FILE), "look_loss": "msssim"}
    looks, clips = choices.samples(models_dir.parent)
    assert models_dir.parent / "media" / "s1.jpg" in looks and models_dir.parent / "media" / "d3.mp4" in clips


def _follow(job: Job, limit: float = 600, warned: list | None = None) -> tuple[str, object]:
    """The run's outcome; its warnings go to ``warned``."""
    warned = [] if warned is None else warned
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for kind, payload in job.messages():
            if kind == "warning":
                warned.append(payload)
            elif kind != "progress":
                return kind, payload
        if not job.alive:
            return next(((k, p) for k, p in job.messages() if k not in ("progress", "warning")), ("gone", None))
        time.sleep(0.2)
    job.cancel()
    raise AssertionError("the run did not finish in time")


def _frames_done(folder: Path) -> int:
    try:
        return RunState.load(folder / STATE).done
    except (OSError, ValueError, KeyError):
        return 0


def test_cancel_ends_the_run_at_once_and_running_again_resumes(offline_engine, media_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    overrides = {**offline_engine.overrides, "mode": "free", "max_frames": 5, "start_candidates": 4,
                 "start_rehearsal": 0, "schedule.steps_first": 4, "schedule.steps": 2, "subframes": 1}
    request = RunRequest(media_dir / "d3.mp4", None, None, overrides, evaluate=False)
    folder = tmp_path / "run"
    kept = prepare_folder(folder, request)
    job = Job(kept, folder)
    job.start()
    progress = []
    deadline = time.monotonic() + 300
    while _frames_done(folder) < 2 and job.alive and time.monotonic() < deadline:
        progress += [p for k, p in job.messages() if k == "progress"]
        time.sleep(0.1)
    job.cancel()
    assert not job.alive
    done = _frames_done(folder)
    assert 2 <= done < 5, f"the run was to be cancelled part-way, after {done} frames"
    assert not (folder / "latents.npz").exists()
    assert any(desc == "animate" and total == 5 for desc, _, total, _, _ in progress), progress
    again = Job(kept, folder)
    again.start()
    kind, payload = _follow(again)
    assert kind == "done", payload
    assert f"(resumed at frame {done})" in payload["summary"] and payload["lines"] == []
    assert np.load(folder / "latents.npz")["ws"].shape == (5, 1, 100)


def test_a_failing_run_sends_one_line(media_dir, offline_engine, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((96, 96, 3), 127, np.uint8)).save(blank)
    request = RunRequest(media_dir / "d3.mp4", blank, None, {**offline_engine.overrides, "max_frames": 2})
    folder = tmp_path / "run"
    job = Job(prepare_folder(folder, request), folder)
    job.start()
    kind, message = _follow(job)
    assert kind == "error" and message.startswith("no face found in the look image") and "\n" not in message


def test_a_look_the_generator_cannot_draw_is_said_on_the_page(media_dir, offline_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    overrides = {**offline_engine.overrides, "max_frames": 1, "start_candidates": 2, "schedule.steps_first": 2,
                 "subframes": 1}
    request = RunRequest(media_dir / "d3.mp4", media_dir / "s1.jpg", None, overrides, evaluate=False)
    folder = tmp_path / "run"
    job = Job(prepare_folder(folder, request), folder)
    job.start()
    warned: list = []
    kind, payload = _follow(job, warned=warned)
    assert kind == "done", payload
    assert len(warned) == 1 and warned[0].startswith("the generator cannot draw the look's face"), warned
