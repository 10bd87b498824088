"""Hostile inputs, one case per bug found (issue 17): each case makes its own bad file, folder or option, runs
the command as a user would, and asserts one line of error (no traceback), a non-zero exit, and that what a
finished run had written is still there, byte for byte. Add a case here for every new bug of this kind."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import resource
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from landmarks.tflite_writer import write_tflite
from PIL import Image
from weights_server import closed_port_url, serve

import stylepuppet
from stylepuppet import weights
from stylepuppet.cli import run
from stylepuppet.generators import checkpoints, loader
from stylepuppet.landmarks.mesh import load_mesh
from stylepuppet.landmarks.tflite_graph import Graph, GraphBuilder, OpSpec, TensorSpec

RUN = ["animate", "--mode", "free", "--max-frames", "2", "--subframes", "1", "--untrained", "--steps-first", "2",
       "--steps", "1", "--start-candidates", "0", "--quiet"]


# ---------------------------------------------------------------------------------------------- helpers


def fails_in_one_line(capsys: pytest.CaptureFixture[str], args: list[str], *expected: str) -> str:
    """Run the command line in this process; it must exit 1 with one ``error:`` line (the last line of stderr,
    after any warnings) that contains every ``expected`` text, and no traceback. Returns that line."""
    code = run([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1, err
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    for text in expected:
        assert text in lines[-1], lines[-1]
    return lines[-1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), to show nothing was changed or lost."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLEPUPPET_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def finished(cache, media_dir, tmp_path_factory) -> Path:
    """A finished two-frame run (tiny untrained networks, free mode, d3.mp4)."""
    out = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("click.secho", lambda *a, **k: None)  # the UNTRAINED warning
        assert run([*RUN, "--driving", str(media_dir / "d3.mp4"), "-o", str(out)]) == 0
    assert {"animation.mp4", "side_by_side.mp4", "latents.npz", "config.json", "track.npz", "targets.npz",
            "state.npz"} <= {p.name for p in out.iterdir()}
    return out


@pytest.fixture
def earlier(finished, tmp_path) -> Path:
    """A copy of the finished run to run hostile commands into."""
    return Path(shutil.copytree(finished, tmp_path / "earlier"))


def again(media_dir: Path, out: Path, *extra: str) -> list[str]:
    """The command that made ``finished`` (so it resumes), into ``out``, with ``extra`` options."""
    return [*RUN, "--driving", str(media_dir / "d3.mp4"), *extra, "-o", str(out)]


def subprocess_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "STYLEPUPPET_CACHE": str(cache),
            "PYTHONPATH": str(Path(stylepuppet.__file__).parents[1])}


# ---------------------------------------------------------------------------------------------- weights files


def _deflated_zeros(blocks: int) -> tuple[bytes, int]:
    """Raw deflate data of ``blocks`` × 16 MiB of zero bytes (~16 KB each: a zip bomb) and its CRC-32."""
    block = bytes(1 << 24)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    return unit * blocks + c.flush(zlib.Z_FINISH), crc


def _zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip of deflated members (name, raw deflate data, unpacked size, CRC-32) whose headers state their sizes
    honestly, as a zip bomb's do."""
    local, central = b"", b""
    for name, data, size, crc in members:
        offset = len(local)
        head = struct.pack("<HHHHHIIIHH", 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0)
        local += b"PK\x03\x04" + head + name.encode() + data
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + head + struct.pack("<HHHII", 0, 0, 0, 0, offset)
                    + name.encode())
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(local + central + end)
    return path


def _small(name: str, content: bytes) -> tuple[str, bytes, int, int]:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return name, c.compress(content) + c.flush(), len(content), zlib.crc32(content)


def zip_bomb(path: Path, members: int = 1, blocks: int = 96) -> Path:
    """A 1.5 MB TorchScript-looking archive whose storage ``data/0`` unpacks to 1.5 GiB (``members`` such storages
    of ``blocks`` × 16 MiB each)."""
    data, crc = _deflated_zeros(blocks)
    storages = [(f"archive/data/{k}", data, blocks << 24, crc) for k in range(members)]
    return _zip(path, [_small("archive/data.pkl", pickle.dumps({}, protocol=2)),
                       _small("archive/code/__torch__.py", b"class Model: pass\n"), *storages])


@pytest.mark.parametrize("option, members, blocks, say", [
    ("--look-weights", 1, 96, "over the 1024 MiB limit"),  # one member of 1.5 GiB
    ("--look-weights", 5, 56, "over the 4096 MiB limit"),  # five of 0.875 GiB: 4.4 GiB in all
    ("--landmark-weights", 1, 96, "over the 1024 MiB limit"),  # a torch.save file for FAN (read by torch.load)
])
def test_a_zip_bomb_in_a_weights_file_is_refused_before_it_is_unpacked(earlier, media_dir, tmp_path, capsys, option,
                                                                       members, blocks, say):
    bomb = zip_bomb(tmp_path / "bomb.pt", members, blocks)
    assert bomb.stat().st_size < 6_000_000
    before, peak = snapshot(earlier), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fails_in_one_line(capsys, ["animate", "--look", media_dir / "s1.jpg", "--driving", media_dir / "d3.mp4",
                               "--max-frames", "2", "--untrained", option, bomb, "--restart", "--quiet",
                               "-o", earlier], say, "zip bomb")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000  # KiB: nothing was unpacked
    assert snapshot(earlier) == before


def _evil_pickle(module: str, name: str, attrs: dict) -> bytes:
    """A protocol-2 pickle that looks up ``module.name`` and BUILDs ``attrs`` onto it as slot state (setattr)."""
    body = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"N}"
    for key, value in attrs.items():
        body += pickle.dumps(key, protocol=2)[2:-1] + pickle.dumps(value, protocol=2)[2:-1] + b"s"
    return body + b"\x86b."


def test_a_network_pickle_cannot_change_the_stand_ins_for_later_loads(tmp_path):
    easydict = tmp_path / "easydict.pkl"
    easydict.write_bytes(_evil_pickle("dnnlib.util", "EasyDict", {"__getitem__": None, "evil": 1}))
    rebuild = tmp_path / "rebuild.pkl"
    rebuild.write_bytes(_evil_pickle("torch._utils", "_rebuild_tensor_v2", {"__defaults__": (True, None, None)}))
    for path in (easydict, rebuild):
        with pytest.raises(stylepuppet.StylePuppetError, match="not NVIDIA networks"):
            checkpoints.read_nvidia(path)
    assert not hasattr(checkpoints.EasyDict, "evil") and checkpoints.EasyDict.__getitem__ is dict.__getitem__
    assert checkpoints._rebuild_tensor.__defaults__ == (False, None, None)


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_a_fan_file_that_calls_a_function_is_refused_naming_it_without_advice_to_turn_the_check_off(
        earlier, media_dir, tmp_path, capsys):
    evil = tmp_path / "2DFAN4.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil()}, evil)
    before = snapshot(earlier)
    line = fails_in_one_line(capsys, [*again(media_dir, earlier, "--restart", "--landmark-weights", evil)],
                             "refused to load", f"{os.system.__module__}.system")
    assert "weights_only" not in line and "weights only" not in line
    assert snapshot(earlier) == before


def _mesh_shaped(declared: int | None = None) -> Graph:
    """A tiny graph with a face mesh's outputs (468 × 3 points, a presence logit); ``declared`` makes the file
    declare another size for the points than the convolution computes."""
    b = GraphBuilder()
    x = b.input((1, 8, 8, 3))
    for size in (1404, 1):
        kernel = b.constant(np.full((size, 8, 8, 3), 0.01, np.float32))
        shape = (1, 1, 1, declared) if declared is not None and size > 1 else None
        b.mark_output(b.op("CONV_2D", [x, kernel, b.constant(np.zeros(size, np.float32))], padding="VALID",
                           stride=(1, 1), shape=shape))
    return b.build()


def _reads_a_missing_tensor() -> Graph:
    """A face-mesh-shaped graph whose first operator reads tensor 99 of 5."""
    conv = {"padding": "VALID", "stride": (1, 1), "dilation": (1, 1), "activation": "NONE"}
    tensors = [TensorSpec("x", (1, 8, 8, 3), "FLOAT32"), TensorSpec("k", (1404, 8, 8, 3), "FLOAT32"),
               TensorSpec("points", (1, 1, 1, 1404), "FLOAT32"), TensorSpec("k2", (1, 8, 8, 3), "FLOAT32"),
               TensorSpec("presence", (1, 1, 1, 1), "FLOAT32")]
    constants = {1: np.zeros((1404, 8, 8, 3), np.float32), 3: np.zeros((1, 8, 8, 3), np.float32)}
    ops = [OpSpec("CONV_2D", (99, 1, -1), (2,), conv), OpSpec("CONV_2D", (0, 3, -1), (4,), conv)]
    return Graph(tensors, constants, ops, (0,), (2, 4))


@pytest.mark.parametrize("graph, say", [
    (_reads_a_missing_tensor, "reads tensors [99, 1, -1]"),
    (lambda: _mesh_shaped(declared=58_946_940), "computes [1, 1, 1, 1404], but the file declares"),
])
def test_a_damaged_tflite_is_refused_in_one_line(earlier, media_dir, tmp_path, capsys, graph, say):
    bad = tmp_path / "face_landmark.tflite"
    bad.write_bytes(write_tflite(graph()))
    before = snapshot(earlier)
    fails_in_one_line(capsys, again(media_dir, earlier, "--restart", "--landmark-net", "mesh", "--landmark-weights",
                                    bad), str(bad), say)
    assert snapshot(earlier) == before


def test_fuzzed_tflite_files_load_as_working_nets_or_fail_with_a_weights_error(tmp_path):
    data = write_tflite(_mesh_shaped())
    kernel = np.full((1404, 8, 8, 3), 0.01, np.float32).tobytes()
    weights_at = data.find(kernel)
    structure = [i for i in range(8, len(data)) if not weights_at <= i < weights_at + len(kernel)]
    rng = np.random.default_rng(17)
    path = tmp_path / "fuzzed.tflite"
    outcomes = set()
    for _ in range(300):
        damaged = bytearray(data)
        for where in rng.choice(structure, size=int(rng.integers(1, 4))):
            damaged[where] = int(rng.integers(0, 256))
        path.write_bytes(bytes(damaged))
        try:
            net = load_mesh(path)
        except stylepuppet.StylePuppetError:
            outcomes.add("refused")
            continue
        out = net(torch.rand(2, 3, net.input_size, net.input_size))  # a net that loads, runs
        assert out.points.shape == (2, net.num_points, 2)
        outcomes.add("loaded")
    assert outcomes == {"refused", "loaded"}


def test_an_unknown_generator_file_is_one_line_naming_every_accepted_format(tmp_path, capsys):
    odd = tmp_path / "odd.pt"
    torch.save({"encoder": torch.zeros(2)}, odd)
    fails_in_one_line(capsys, ["generate", "--network", odd, "--seeds", "0", "-o", tmp_path / "faces"],
                      *(f.name for f in loader.FORMATS))
    assert not (tmp_path / "faces").exists()


# ---------------------------------------------------------------------------------------------- downloads


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "private-cache"
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(path))
    monkeypatch.setattr(weights, "CHUNK", 1000)
    return path


def _entry(name: str, url: str, size: int | None = None) -> weights.WeightsEntry:
    return weights.WeightsEntry(name=name, url=url, filename=f"{name}.pt", sha256=None, size=size,
                                licence="Test Licence, https://example.invalid", kind="stylegan2", resolution=16,
                                description="test file")


def test_a_download_larger_than_its_published_size_stops_at_once(private_cache, monkeypatch, capsys):
    read: list[int] = []
    real_open = weights._open

    def counting(url, offset, validator):
        response = real_open(url, offset, validator)
        real_read = response.read
        response.read = lambda n=-1: read.append(len(data := real_read(n))) or data
        return response

    with serve() as server:
        monkeypatch.setattr(weights, "REGISTRY", {"big": _entry("big", server.add("big.pt", bytes(50_000)), 1000)})
        monkeypatch.setattr(weights, "_open", counting)
        fails_in_one_line(capsys, ["weights", "fetch", "big"], "larger than its published size")
    assert sum(read) <= 1000 + weights.CHUNK
    assert not any(private_cache.rglob("big.pt*"))


def test_the_hint_of_an_interrupted_url_download_is_a_command_that_resumes_it(private_cache, capsys):
    data = bytes(range(256)) * 20
    with serve() as server:
        url = server.add("net.pt", data)
        server.cut_after = 2000
        line = fails_in_one_line(capsys, ["weights", "fetch", url], "stopped at 2000")
        hint = line.split("run `stylepuppet ", 1)[1].split("`", 1)[0].split()
        server.cut_after = None
        assert run(hint) == 0, capsys.readouterr().err
    assert weights.cache_path(weights.url_entry(url)).read_bytes() == data


def test_weights_verify_reports_every_bad_record(private_cache, capsys):
    for name in ("one", "two"):
        entry = weights.url_entry(f"http://example.invalid/{name}.pt")
        path = weights.cache_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        weights.record_path(path).write_text("{not json")
    code = run(["weights", "verify"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert sum(line.startswith("bad") for line in out.splitlines()) == 2
    assert err.startswith("error: 2 of 2 cached files failed verification") and err.count("\n") == 1


def test_an_imported_weights_file_gets_a_plain_files_permissions(private_cache, tmp_path, capsys):
    mine = tmp_path / "net.pt"
    mine.write_bytes(b"weights")
    mine.chmod(0o644)
    mask = os.umask(0o022)
    try:
        assert run(["weights", "import", str(mine), "--name", "mediapipe-face-landmarker"]) == 0
    finally:
        os.umask(mask)
    cached = weights.cache_path(weights.REGISTRY["mediapipe-face-landmarker"])
    assert cached.stat().st_mode & 0o777 == 0o644


def test_weights_info_shows_url_and_licence(capsys):
    assert run(["weights", "info", "fan-2dfan4"]) == 0
    out = capsys.readouterr().out
    entry = weights.REGISTRY["fan-2dfan4"]
    assert entry.url in out and entry.licence in out


def test_every_missing_weights_file_is_named_in_one_message_and_no_folder_is_left(media_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "empty-cache"))
    offline = {name: dataclasses.replace(e, url=closed_port_url(e.filename)) for name, e in weights.REGISTRY.items()}
    monkeypatch.setattr(weights, "REGISTRY", offline)
    out = tmp_path / "new-run"
    fails_in_one_line(capsys, ["animate", "--look", media_dir / "s1.jpg", "--driving", media_dir / "d3.mp4", "-o", out],
                      "3 weights files are missing", "stylegan2-ffhq-256", "fan-2dfan4", "lpips-vgg16")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- the run folder


@pytest.mark.parametrize("restart", [False, True])
def test_an_unreadable_driving_video_leaves_an_earlier_run_intact(earlier, tmp_path, capsys, restart):
    for work in ("state.npz", "state-frames"):  # a finished run folder without its state, or --restart
        if not restart:
            shutil.rmtree(earlier / work) if (earlier / work).is_dir() else (earlier / work).unlink()
    before = snapshot(earlier)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 but not a video" * 50)
    fails_in_one_line(capsys, [*RUN, "--driving", clip, *(["--restart"] if restart else []), "-o", earlier],
                      str(clip))
    assert snapshot(earlier) == before


def test_a_run_that_fails_before_its_first_frame_leaves_an_earlier_run_intact(earlier, tmp_path, capsys):
    clip = tmp_path / "faceless"
    clip.mkdir()
    for i in range(3):
        Image.new("RGB", (96, 96), (127, 127, 127)).save(clip / f"{i}.png")
    before = snapshot(earlier)
    fails_in_one_line(capsys, [*RUN, "--driving", clip, "--restart", "-o", earlier], "no face found")
    assert snapshot(earlier) == before


def _wait_for(condition, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_second_run_into_a_busy_folder_stops_naming_the_first(cache, media_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    command = [sys.executable, "-m", "stylepuppet", *again(media_dir, out, "--steps-first", "100000")]
    first = subprocess.Popen(command, env=subprocess_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (out / ".stylepuppet.lock").is_file() and (out / ".stylepuppet.lock").stat().st_size > 0
                  or (out / "state.npz").exists(), first)
        assert first.poll() is None
        for extra in ([], ["--restart"]):
            fails_in_one_line(capsys, again(media_dir, out, *extra), f"{out} is in use by another stylepuppet run",
                              f"pid {first.pid}:", "animate")
    finally:
        first.kill()
        first.wait()


def test_a_run_terminated_before_its_first_frame_leaves_no_folder(cache, media_dir, tmp_path):
    out = tmp_path / "terminated"
    command = [sys.executable, "-m", "stylepuppet", *again(media_dir, out, "--steps-first", "100000")]
    first = subprocess.Popen(command, env=subprocess_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    _wait_for(lambda: (out / ".stylepuppet.lock").is_file() and (out / ".stylepuppet.lock").stat().st_size > 0,
              first)
    time.sleep(3)  # into the tracking or the first frame
    first.terminate()
    assert first.wait(timeout=120) == 128 + 15 and "Traceback" not in first.stderr.read()
    assert not out.exists()


def test_hidden_temporary_files_of_a_killed_run_are_removed_by_the_next(earlier, media_dir, capsys):
    stale = [earlier / ".latents.npz.k3j2h1a0.npz", earlier / ".animation.mp4.x9y8z7w6.tmp.mp4",
             earlier / "state-frames" / ".000001.npz.q1w2e3r4.npz"]
    mine = [earlier / ".my-notes", earlier / "notes.txt"]
    for path in stale + mine:
        path.write_bytes(b"half a file")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert run(again(media_dir, earlier)) == 0, capsys.readouterr().err
    assert "resumed at frame 2" in capsys.readouterr().out
    assert not any(p.exists() for p in stale) and all(p.exists() for p in mine)


# ---------------------------------------------------------------------------------------------- divergence


def test_a_diverging_run_stops_in_one_line_and_keeps_the_earlier_outputs(earlier, media_dir, capsys):
    before = snapshot(earlier)
    fails_in_one_line(capsys, again(media_dir, earlier, "--restart", "--lambda-fidelity", "1e308"),
                      "diverged at frame 0", "--restart")
    assert snapshot(earlier) == before


@pytest.fixture
def nan_latents(finished, tmp_path) -> Path:
    """A run folder whose latents.npz holds NaN in its second frame."""
    folder = Path(shutil.copytree(finished, tmp_path / "nan"))
    with np.load(folder / "latents.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["ws"][1] = np.nan
    np.savez(folder / "latents.npz", **arrays)
    return folder


def test_render_refuses_nan_latents(nan_latents, tmp_path, capsys):
    fails_in_one_line(capsys, ["render", nan_latents / "latents.npz", "-o", tmp_path / "out.mp4"],
                      "non-finite latents", "1 of 2 frames (1)")
    assert not (tmp_path / "out.mp4").exists()


def test_evaluate_reports_nan_latents(nan_latents, media_dir, capsys):
    fails_in_one_line(capsys, ["evaluate", nan_latents, "--driving", media_dir / "d3.mp4"], "non-finite latents")


@pytest.mark.parametrize("fps", [0.0, float("nan")])
def test_latents_with_no_frame_rate_are_refused(finished, tmp_path, capsys, fps):
    with np.load(finished / "latents.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["fps"] = np.float64(fps)
    np.savez(tmp_path / "latents.npz", **arrays)
    fails_in_one_line(capsys, ["render", tmp_path / "latents.npz", "-o", tmp_path / "out.mp4"], "frame rate")


# ---------------------------------------------------------------------------------------------- tracks and clips


@pytest.fixture(scope="module")
def d3_track(media_dir, tmp_path_factory) -> Path:
    """A track of the first two frames of d3.mp4."""
    path = tmp_path_factory.mktemp("track") / "d3.npz"
    stylepuppet.track(media_dir / "d3.mp4", max_frames=2).save(path)
    return path


def _without_source(track: Path, path: Path) -> Path:
    with np.load(track) as z:
        np.savez(path, **{k: z[k] for k in z.files if k not in ("source_digest", "start")})
    return path


@pytest.mark.parametrize("clip, extra, say", [
    ("d0.mp4", [], "was made from another video than"),
    ("d3.mp4", ["--start", "10"], "starts at frame 0 of d3.mp4, but this run starts at frame 10"),
    ("d3.mp4", ["--max-frames", "3"], "covers 2 frames from frame 0, but this run needs 3"),
    ("old", [], "does not record which video it was made from"),
])
def test_a_track_of_another_clip_or_window_is_refused(earlier, d3_track, media_dir, tmp_path, capsys, clip, extra,
                                                      say):
    track = _without_source(d3_track, tmp_path / "old.npz") if clip == "old" else d3_track
    driving = media_dir / ("d3.mp4" if clip == "old" else clip)
    before = snapshot(earlier)
    fails_in_one_line(capsys, [*RUN, "--driving", driving, "--track", track, *extra, "--restart", "-o", earlier],
                      say, "stylepuppet track")
    assert snapshot(earlier) == before


def test_a_restart_replaces_the_earlier_run_once_it_has_its_own(earlier, d3_track, media_dir, capsys):
    before = snapshot(earlier)
    assert run(again(media_dir, earlier, "--restart", "--seed", "3", "--track", d3_track)) == 0, capsys.readouterr()
    after = snapshot(earlier)
    assert "track.npz" not in after  # the given track replaces the earlier run's
    assert all(after[name] != before[name] for name in ("animation.mp4", "latents.npz", "config.json", "state.npz",
                                                         "targets.npz", "state-frames/000000.npz"))
    assert not any(name.startswith(".") for name in after)


def test_a_track_named_but_missing_is_one_line(earlier, media_dir, tmp_path, capsys):
    fails_in_one_line(capsys, again(media_dir, earlier, "--track", tmp_path / "none.npz"), "track file not found")


def test_evaluate_refuses_a_driving_clip_other_than_the_runs(finished, media_dir, capsys):
    fails_in_one_line(capsys, ["evaluate", finished, "--driving", media_dir / "d0.mp4"],
                      "is not the driving clip the run", str(media_dir / "d3.mp4"))
    assert not (finished / "evaluation.mp4").exists()


def test_evaluate_of_two_frames_is_one_line_without_warnings(finished, media_dir, capsys):
    line = fails_in_one_line(capsys, ["evaluate", finished, "--driving", media_dir / "d3.mp4"], "at least 3")
    assert "nan" not in line


# ---------------------------------------------------------------------------------------------- output paths


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder nobody may write into (root ignores permissions, so it gets a folder of /sys instead)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    elif Path("/sys/fs").is_dir():
        yield Path("/sys/fs")
    else:
        pytest.skip("running as root without /sys: no folder is unwritable")


@pytest.mark.parametrize("where", ["in", "is"])
def test_an_unwritable_output_folder_is_one_line(unwritable, media_dir, capsys, where):
    out = unwritable / "run" if where == "in" else unwritable
    fails_in_one_line(capsys, [*RUN, "--driving", media_dir / "d3.mp4", "-o", out], f"cannot write {out}")


def test_an_output_folder_that_is_a_file_is_one_line(finished, media_dir, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    fails_in_one_line(capsys, [*RUN, "--driving", media_dir / "d3.mp4", "-o", taken], f"{taken} is a file")
    fails_in_one_line(capsys, [*RUN, "--driving", media_dir / "d3.mp4", "-o", taken / "run"], f"cannot write {taken}")
    assert taken.read_text() == "mine"


def test_render_into_a_folder_is_one_line(finished, tmp_path, capsys):
    fails_in_one_line(capsys, ["render", finished / "latents.npz", "-o", tmp_path], f"{tmp_path} is a folder")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_the_latents_keeps_the_earlier_ones(earlier, media_dir, capsys, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    before = snapshot(earlier)
    monkeypatch.setattr("stylepuppet.atomic.np.savez", no_space)
    fails_in_one_line(capsys, again(media_dir, earlier, "--latent-smooth", "1"),
                      f"cannot write {earlier / 'latents.npz'} (No space left on device)", "free some space")
    after = snapshot(earlier)
    assert after["latents.npz"] == before["latents.npz"] and after["state.npz"] == before["state.npz"]
    assert set(after) == set(before)  # no temporary file left


@pytest.mark.parametrize("damaged", ["state.npz", "targets.npz", "state-frames/000000.npz"])
def test_a_truncated_work_file_asks_for_a_restart(earlier, media_dir, capsys, damaged):
    path = earlier / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = snapshot(earlier)
    fails_in_one_line(capsys, again(media_dir, earlier), "rerun with --restart")
    assert snapshot(earlier) == before


def test_a_truncated_latents_file_is_one_line(finished, tmp_path, capsys):
    cut = tmp_path / "latents.npz"
    cut.write_bytes((finished / "latents.npz").read_bytes()[:3000])
    fails_in_one_line(capsys, ["render", cut, "-o", tmp_path / "out.mp4"], "is not a stylepuppet latents.npz")


# ---------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("extra, say", [
    (["--seed", str(2**64)], "seed: must be <= 4294967295"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--lambda-landmark", "0", "--lambda-smoothness", "0", "--lambda-fidelity", "0"], "nothing to optimise"),
    (["--lambda-landmark", "0", "--lambda-fidelity", "0"], "nothing to optimise"),
])
def test_bad_options_are_one_line(earlier, media_dir, capsys, extra, say):
    before = snapshot(earlier)
    fails_in_one_line(capsys, again(media_dir, earlier, "--restart", *extra), say)
    assert snapshot(earlier) == before


@pytest.mark.parametrize("toml, say", [
    ("seed = 100000000000000000000\n", "seed: must be <= 4294967295"),
    ("seed = 1e20\n", "seed: must be an integer"),
])
def test_a_huge_seed_in_a_config_file_is_one_line(earlier, media_dir, tmp_path, capsys, toml, say):
    config = tmp_path / "run.toml"
    config.write_text(toml)
    fails_in_one_line(capsys, again(media_dir, earlier, "--restart", "--config", config), say)


def test_render_on_cuda_without_cuda_is_one_line(finished, tmp_path, capsys):
    fails_in_one_line(capsys, ["render", finished / "latents.npz", "--device", "cuda", "-o", tmp_path / "o.mp4"],
                      "CUDA is not available")
