"""The run state: exact round trips, chunked saves whose cost does not grow with the run, the fingerprint."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from stylepuppet import atomic
from stylepuppet.animation.state import CHUNK, RunState, chunk_folder, fingerprint
from stylepuppet.config import preset
from stylepuppet.video import content_digest


def test_state_round_trips_exactly(tmp_path):
    ws = [torch.randn(3, 5) for _ in range(4)]
    state = RunState("abc", ws, {"landmark": [0.1, 0.2, 0.3, 0.4]}, {"b4.noise": np.random.rand(4, 4).astype("f4")})
    state.save(tmp_path / "state.npz")
    again = RunState.load(tmp_path / "state.npz")
    assert again.fingerprint == "abc" and again.done == 4
    assert all(torch.equal(a, b) for a, b in zip(ws, again.ws))
    assert again.terms == state.terms and np.array_equal(again.noise["b4.noise"], state.noise["b4.noise"])

def test_fingerprint_follows_settings_and_input_content_but_not_the_rendering(tmp_path):
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"one")
    cfg = preset("quick")
    base = fingerprint(cfg, {"driving": clip, "look": None})
    assert fingerprint(dataclasses.replace(cfg, subframes=3), {"driving": clip, "look": None}) == base
    assert fingerprint(dataclasses.replace(cfg, latent_smooth=1.0), {"driving": clip, "look": None}) == base
    assert fingerprint(dataclasses.replace(cfg, show_points=True), {"driving": clip, "look": None}) == base
    pasting = dataclasses.replace(cfg, paste_back=True, paste_into="driving")
    assert fingerprint(pasting, {"driving": clip, "look": None}) == base
    assert fingerprint(dataclasses.replace(cfg, seed=1), {"driving": clip, "look": None}) != base
    clip.write_bytes(b"two")
    assert fingerprint(cfg, {"driving": clip, "look": None}) != base


def test_the_rendering_only_settings_are_left_out_of_the_fingerprint_not_set(tmp_path):
    """The fingerprint hashes the config's JSON without the rendering-only settings added after it (the points
    panel, paste-back) and with the older ones at 1 and 0: a run saved before a rendering setting existed
    resumes rather than being refused."""
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"one")
    cfg = preset("quick")
    before = json.loads(dataclasses.replace(cfg, subframes=1, latent_smooth=0.0).to_json())
    for key in ("show_points", "paste_back", "paste_into"):
        del before[key]
    digest = hashlib.sha256(json.dumps(before, indent=2, sort_keys=True).encode())
    digest.update(f"driving={content_digest(clip)};look=-;".encode())
    now = fingerprint(dataclasses.replace(cfg, show_points=True, paste_back=True), {"driving": clip, "look": None})
    assert now == digest.hexdigest()


def _grow(path: Path, frames: int, monkeypatch) -> list[int]:
    """Save a state after each of ``frames`` frames (as the animate loop does); bytes written per save."""
    written: list[int] = []
    real = atomic.save_npz

    def spy(target, **arrays):
        written[-1] += sum(np.asarray(a).nbytes for a in arrays.values())
        real(target, **arrays)

    monkeypatch.setattr(atomic, "save_npz", spy)
    state = RunState("abc", [], {}, {})
    g = torch.Generator().manual_seed(0)
    for i in range(frames):
        state.ws.append(torch.randn(4, 8, generator=g))
        state.terms.setdefault("landmark", []).append(float(i))
        if i == 0:
            state.noise = {"b8.noise": np.random.rand(8, 8).astype("f4")}
        written.append(0)
        state.save(path)
    return written

def test_saving_after_each_frame_costs_the_same_however_long_the_run(tmp_path, monkeypatch):
    written = _grow(tmp_path / "state.npz", 5 * CHUNK, monkeypatch)
    per_frame = 4 * 8 * 4 + 8  # one latent and one loss value
    assert max(written[1:]) <= CHUNK * per_frame + 200  # at most one chunk (and its fingerprint) per save
    assert written[CHUNK - 1] == written[3 * CHUNK - 1] == written[5 * CHUNK - 1]  # full chunks cost alike
    assert written[0] > written[1]  # the noise is written with frame 0, not again
    again = RunState.load(tmp_path / "state.npz")
    assert again.done == 5 * CHUNK and again.terms["landmark"] == [float(i) for i in range(5 * CHUNK)]

def test_adams_moments_are_saved_with_the_last_frame_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr("stylepuppet.animation.state.CHUNK", 2)
    path = tmp_path / "state.npz"
    state = RunState("abc", [], {}, {})
    for i in range(3):
        state.ws.append(torch.full((1, 4), float(i)))
        state.carried = {"step": np.float32(8 * (i + 1)), "exp_avg": np.full((1, 1, 4), i, dtype="f4")}
        state.save(path)
    back = RunState.load(path)
    assert back.done == 3 and float(back.carried["step"]) == 24
    assert np.array_equal(back.carried["exp_avg"], state.carried["exp_avg"])
    assert RunState.load(path).carried.keys() == {"step", "exp_avg"}
    state.carried = {}
    state.ws.append(torch.full((1, 4), 3.0))
    state.save(path)
    assert RunState.load(path).carried == {}  # a run without carried moments saves none


def test_state_in_several_chunks_round_trips_and_a_short_chunk_ends_it(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    _grow(path, 2 * CHUNK + 3, monkeypatch)
    state = RunState.load(path)
    assert state.done == 2 * CHUNK + 3 and state.noise["b8.noise"].shape == (8, 8)
    state.ws.append(torch.ones(4, 8))
    state.terms["landmark"].append(-1.0)
    state.save(path)  # appends to the loaded run without rewriting earlier chunks
    assert RunState.load(path).done == 2 * CHUNK + 4
    (chunk_folder(path) / "000001.npz").unlink()  # a hole: frames after it cannot be trusted
    assert RunState.load(path).done == CHUNK
    RunState.remove(path)
    assert not path.exists() and not chunk_folder(path).exists()
