"""The run folder's one list of files: a new output is one entry, written by every run."""

import dataclasses

import pytest

from stylepuppet.animation import outputs
from stylepuppet.animation.outputs import OUTPUTS, Output
from stylepuppet.animation.run import animate
from stylepuppet.config import resolve_config


def test_an_output_added_to_the_list_is_written_by_every_run(media_dir, tmp_path, monkeypatch):
    def write_frames(run, path):
        path.write_text(f"{len(run.ws)} frames of {run.cfg.network}\n")

    monkeypatch.setattr(outputs, "OUTPUTS", (*OUTPUTS, Output("frames.txt", write_frames)))
    monkeypatch.setenv("STYLEPUPPET_CACHE", str(tmp_path / "cache"))
    cfg = resolve_config("free", None, {"untrained": True, "max_frames": 2, "subframes": 1, "start_candidates": 0,
                                        "start_rehearsal": 0, "schedule.steps_first": 2, "schedule.steps": 1})
    with pytest.warns(UserWarning, match="UNTRAINED"):
        animate(cfg, media_dir / "d0.mp4", tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "frames.txt").read_text() == "2 frames of stylegan2-ffhq-256\n"
    assert all((tmp_path / "run" / o.name).exists() for o in OUTPUTS
               if o.write is not None and (o.wanted is None or o.wanted(cfg)))
    with pytest.warns(UserWarning, match="UNTRAINED"):
        animate(dataclasses.replace(cfg, seed=1), media_dir / "d0.mp4", tmp_path / "run", restart=True,
                progress=False)
    assert (tmp_path / "run" / "frames.txt").exists()
