"""End to end: `stylepuppet animate` / `render` on the real sample media with small untrained networks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from stylepuppet.animation.state import STATE, RunState
from stylepuppet.cli import run
from stylepuppet.config import config_from_dict
from stylepuppet.face.smoothing import gaussian_smooth

FAST = ["--untrained", "--untrained-size", "tiny", "--look-loss", "msssim", "--steps-first", "6", "--steps", "3",
        "--quiet"]


def decode(path: Path) -> tuple[list[np.ndarray], float, bool]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, float(stream.average_rate), bool(container.streams.audio)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private weights cache, so nothing is read from or written to the user's."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLEPUPPET_CACHE", str(path))
        yield path


def last_line(err: str) -> str:
    """The last line of stderr (weights lookups may print download attempts before it)."""
    return err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def keep_identity_run(cache, media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ki")
    args = ["animate", "--look", str(media_dir / "s1.jpg"), "--driving", str(media_dir / "d3.mp4"), "--start", "30",
            "--max-frames", "4", "--subframes", "2", *FAST, "-o", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        lines: list[str] = []
        mp.setattr("click.secho", lambda message, **kw: lines.append(message))
        assert run(args) == 0
    assert any(line.startswith("WARNING: UNTRAINED networks stand in for missing weights: generator "
                               "(stylegan2-ffhq-256), landmark net (fan-2dfan4)") for line in lines)
    return out


def test_animate_writes_every_output_and_they_decode(keep_identity_run, media_dir):
    out = keep_identity_run
    frames, fps, audio = decode(out / "animation.mp4")
    assert len(frames) == 4 * 2 and fps == pytest.approx(30 * 2) and audio
    assert frames[0].shape == (64, 64, 3)
    side, side_fps, _ = decode(out / "side_by_side.mp4")
    # look | driving | output, each enlarged to 256² (the outputs are 64²), under a strip of captions
    assert len(side) == 4 and side_fps == pytest.approx(30) and side[0].shape[1:] == (3 * 256, 3)
    assert 256 < side[0].shape[0] < 300
    with np.load(out / "latents.npz") as z:
        assert z["ws"].shape == (4, 10, 32)  # tiny untrained StyleGAN2: 64², W+ has 10 layers of 32
        assert z["loss/landmark"].shape == (4,) and np.isfinite(z["loss/landmark"]).all()
        assert any(k.startswith("noise/synthesis.b64.") for k in z.files)
    cfg = config_from_dict(json.loads((out / "config.json").read_text()))
    assert cfg.max_frames == 4 and cfg.start == 30 and cfg.untrained and cfg.look_loss == "msssim"


def test_output_frames_are_stamped_untrained(keep_identity_run):
    frames, _, _ = decode(keep_identity_run / "animation.mp4")
    top = frames[0][:6].reshape(-1, 3).astype(int)
    assert (top[:, 0] > 150).mean() > 0.5  # the red "UNTRAINED" band


def test_rendering_uses_the_noise_frozen_after_frame_0(keep_identity_run):
    with np.load(keep_identity_run / "state.npz") as state, np.load(keep_identity_run / "latents.npz") as latents:
        noise = [k for k in state.files if k.startswith("noise/")]
        assert noise and all(np.array_equal(state[k], latents[k]) for k in noise)


def test_render_reproduces_the_animation(keep_identity_run, tmp_path):
    out = tmp_path / "again.mp4"
    assert run(["render", str(keep_identity_run / "latents.npz"), "-o", str(out)]) == 0
    again, fps, audio = decode(out)
    original, _, _ = decode(keep_identity_run / "animation.mp4")
    assert len(again) == len(original) and fps == pytest.approx(60) and audio
    # Same frames (test_animate checks them exactly); H.264 adds a little noise of its own.
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(again, original)]) <= 3
    single = tmp_path / "k1.mp4"
    assert run(["render", str(keep_identity_run / "latents.npz"), "--subframes", "1", "-o", str(single)]) == 0
    frames, fps, _ = decode(single)
    assert len(frames) == 4 and fps == pytest.approx(30)


def test_rerunning_a_finished_run_resumes_and_other_settings_are_refused(keep_identity_run, media_dir, capsys):
    args = ["animate", "--look", str(media_dir / "s1.jpg"), "--driving", str(media_dir / "d3.mp4"), "--start", "30",
            "--max-frames", "4", "--subframes", "2", *FAST, "-o", str(keep_identity_run)]
    before = np.load(keep_identity_run / "latents.npz")["ws"]
    assert run(args) == 0
    assert "(resumed at frame 4)" in capsys.readouterr().out
    assert np.array_equal(np.load(keep_identity_run / "latents.npz")["ws"], before)
    changed = [*args[:-2], "--seed", "5", "-o", str(keep_identity_run)]
    assert run(changed) == 1
    err = last_line(capsys.readouterr().err)
    assert err.startswith("error: ") and "other settings or inputs" in err and "--restart" in err


def test_a_finished_run_given_a_latent_filter_renders_again_without_optimising(keep_identity_run, media_dir,
                                                                               tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(keep_identity_run, out)
    raw = torch.stack(RunState.load(out / STATE).ws).numpy()  # as optimised (latents.npz has the preset's filter)
    args = ["animate", "--look", str(media_dir / "s1.jpg"), "--driving", str(media_dir / "d3.mp4"), "--start", "30",
            "--max-frames", "4", "--subframes", "2", *FAST, "--latent-smooth", "1", "-o", str(out)]
    assert run(args) == 0
    assert "(resumed at frame 4)" in capsys.readouterr().out
    filtered = np.load(out / "latents.npz")["ws"]
    np.testing.assert_allclose(filtered, gaussian_smooth(raw, 1.0), atol=1e-6)
    assert np.abs(np.diff(filtered, axis=0)).mean() < np.abs(np.diff(raw, axis=0)).mean()
    assert len(decode(out / "animation.mp4")[0]) == 8


def test_paste_back_writes_the_whole_look_image_animated_with_the_driving_audio(keep_identity_run, media_dir,
                                                                               tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(keep_identity_run, out)
    args = ["animate", "--look", str(media_dir / "s1.jpg"), "--driving", str(media_dir / "d3.mp4"), "--start", "30",
            "--max-frames", "4", "--subframes", "2", *FAST, "--paste-back", "-o", str(out)]
    assert run(args) == 0
    assert "(resumed at frame 4)" in capsys.readouterr().out  # paste-back only renders
    full, fps, audio = decode(out / "animation_full.mp4")
    assert len(full) == 8 and fps == pytest.approx(60) and audio
    assert full[0].shape == (1146, 1146, 3)  # s1.jpg is 1145² (yuv420p needs even sides: one edge row repeated)
    side, side_fps, _ = decode(out / "side_by_side_full.mp4")
    assert len(side) == 4 and side_fps == pytest.approx(30) and side[0].shape == (1146, 2290, 3)
    again = tmp_path / "full.mp4"
    assert run(["render", str(out / "latents.npz"), "--paste-back", "-o", str(again)]) == 0
    frames, fps, audio = decode(again)
    assert len(frames) == 8 and fps == pytest.approx(60) and audio and frames[0].shape == (1146, 1146, 3)
    assert run(["render", str(out / "latents.npz"), "--paste-into", "driving", "-o", str(again)]) == 1
    assert last_line(capsys.readouterr().err) == ("error: paste_into: 'driving' is the picture of paste-back; turn it "
                                                  "on too (--paste-back)")


def test_free_mode_with_the_original_heat_map_loss(cache, media_dir, tmp_path):
    args = ["animate", "--mode", "free", "--preset", "seed", "--driving", str(media_dir / "d0.mp4"),
            "--max-frames", "3", "--subframes", "1", *FAST, "-o", str(tmp_path)]
    assert run(args) == 0
    frames, fps, audio = decode(tmp_path / "animation.mp4")
    assert len(frames) == 3 and fps == pytest.approx(25) and not audio  # d0 has no audio track
    side, _, _ = decode(tmp_path / "side_by_side.mp4")
    assert side[0].shape[1] == 2 * 256  # no look panel in free mode
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["landmarks"]["form"] == "heatmap" and cfg["mode"] == "free"


def test_dcgan_with_the_mesh_loss_runs_in_both_modes(cache, media_dir, models_dir, tmp_path):
    common = ["--driving", str(media_dir / "d0.mp4"), "--network", str(models_dir / "digiface_dcgan64_G.pt"),
              "--landmark-net", "mesh", "--landmark-weights", str(models_dir / "face_landmark.tflite"),
              "--subframes", "1", "--max-frames", "3", "--steps-first", "6", "--steps", "3", "--quiet"]
    assert run(["animate", "--mode", "free", *common, "-o", str(tmp_path / "free")]) == 0
    assert run(["animate", "--look", str(media_dir / "s3.jpg"), "--space", "w", "--look-loss", "msssim", *common,
                "-o", str(tmp_path / "ki")]) == 0
    for name in ("free", "ki"):
        with np.load(tmp_path / name / "latents.npz") as z:
            assert z["ws"].shape == (3, 1, 100)
            np.testing.assert_allclose(np.linalg.norm(z["ws"], axis=-1), 10.0, rtol=1e-5)  # on the sphere
        assert len(decode(tmp_path / name / "animation.mp4")[0]) == 3


# ------------------------------------------------------------------------------------------ resume after SIGKILL


def _command(media_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "stylepuppet", "animate", "--look", str(media_dir / "s5.jpg"), "--driving",
            str(media_dir / "d3.mp4"), "--max-frames", "5", "--subframes", "1", "--jitter", "2", *FAST,
            "--steps-first", "8", "--steps", "4", "-o", str(out)]


def _frames_done(out: Path) -> int:
    try:
        return RunState.load(out / "state.npz").done
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_latents(cache, media_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STYLEPUPPET_CACHE": str(cache)}
    whole = subprocess.Popen(_command(media_dir, tmp_path / "whole"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen(_command(media_dir, tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _frames_done(tmp_path / "killed") < 2 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done = _frames_done(tmp_path / "killed")
    print(f"SIGKILL after {done} of 5 frames")
    assert 2 <= done < 5, f"the run was to be killed part-way, after {done} frames"
    assert not (tmp_path / "killed" / "latents.npz").exists()
    resumed = subprocess.run(_command(media_dir, tmp_path / "killed"), env=env, capture_output=True, text=True,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(resumed at frame {done})" in resumed.stdout
    assert whole.wait() == 0, whole.stderr.read()
    with np.load(tmp_path / "whole" / "latents.npz") as a, np.load(tmp_path / "killed" / "latents.npz") as b:
        assert a["ws"].shape == (5, 10, 32)
        assert np.array_equal(a["ws"], b["ws"])
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a.files if k.startswith(("noise/", "loss/")))


# ------------------------------------------------------------------------------------------ bad input


def _blank(path: Path, size: int = 96) -> Path:
    Image.fromarray(np.full((size, size, 3), 127, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("extra, message", [
    ([], "error: keep-identity mode needs a look image: give --look IMAGE, or use --mode free"),
    (["--mode", "free", "--groups", "mouth=5,teeth=1"], "error: landmarks.groups: unknown landmark group 'teeth'"),
])
def test_bad_options_are_one_line_errors(cache, media_dir, tmp_path, capsys, extra, message):
    code = run(["animate", "--driving", str(media_dir / "d0.mp4"), *extra, "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(message) and err.count("\n") == 1


def test_an_unknown_preset_is_a_usage_error_naming_the_presets(media_dir, tmp_path, capsys):
    code = run(["animate", "--mode", "free", "--driving", str(media_dir / "d0.mp4"), "--preset", "fastest",
                "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "'fastest' is not one of 'seed', 'fast', 'keep-identity', 'free', 'free-fast', 'quick'" in err


def test_bad_config_file(cache, media_dir, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[schedule]\nsteps = -2\n")
    assert run(["animate", "--driving", str(media_dir / "d0.mp4"), "--mode", "free", "--config", str(bad),
                "-o", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == "error: schedule.steps: must be >= 1, got -2\n"


def test_look_without_a_face(cache, media_dir, tmp_path, capsys):
    look = _blank(tmp_path / "wall.png")
    code = run(["animate", "--look", str(look), "--driving", str(media_dir / "d0.mp4"), *FAST,
                "-o", str(tmp_path / "o")])
    assert code == 1
    assert last_line(capsys.readouterr().err).startswith(f"error: no face found in the look image {look}")


def test_driving_without_a_face(cache, tmp_path, capsys):
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(3):
        _blank(clip / f"{i}.png")
    code = run(["animate", "--mode", "free", "--driving", str(clip), *FAST, "-o", str(tmp_path / "o")])
    assert code == 1
    assert last_line(capsys.readouterr().err).startswith("error: no face found in any of the 3 frame(s)")


def test_a_start_face_the_identity_term_cannot_frame_is_a_one_line_error(cache, media_dir, tmp_path, capsys):
    """The free preset's identity term frames the start face by the landmark net's points; an untrained mesh reads
    them bunched in a few pixels, too little to frame a face chip."""
    code = run(["animate", "--mode", "free", "--driving", str(media_dir / "d0.mp4"), "--landmark-net", "mesh",
                "--start-candidates", "0", "--start-rehearsal", "0", "--max-frames", "3", "--subframes", "1", *FAST,
                "-o", str(tmp_path / "o")])
    assert code == 1
    line = last_line(capsys.readouterr().err)
    assert line.startswith("error: the identity term cannot frame the start face (the face's chip lies outside")
    assert line.endswith("set --lambda-identity 0") and "\n" not in line


def test_missing_weights_without_untrained_name_the_file(cache, media_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stylepuppet", "animate", "--mode", "free", "--driving",
                           str(media_dir / "d0.mp4"), "-o", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "STYLEPUPPET_CACHE": str(cache)}, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "stylegan2-ffhq-256" in last and str(cache) in last
