"""The CUDA options of the schedule (cuda_autocast, cuda_channels_last, cuda_compile) on a real GPU.

Skipped where CUDA is absent (this project's own machines have none): the first user with a GPU runs
``pytest tests/animation/test_cuda_options.py`` and ``python benchmarks/bench_step.py --device cuda``.
Each runs ``animate`` on the tiny untrained networks for a few frames of a real clip, and compares the
run's mean loss terms and latents with the same run in fp32 on the GPU and on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylepuppet.animation.run import animate
from stylepuppet.config import resolve_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BASE = {"untrained": True, "look_loss": "msssim", "max_frames": 3, "subframes": 1, "schedule.steps_first": 20,
        "schedule.steps": 6}


def run(tmp_path, media_dir, name: str, **settings):
    cfg = resolve_config("keep-identity", None, {**BASE, **settings})
    with pytest.warns(UserWarning, match="UNTRAINED"):
        result = animate(cfg, media_dir / "d0.mp4", tmp_path / name, look=media_dir / "s3.jpg", progress=False)
    with np.load(tmp_path / name / "latents.npz") as z:
        return result.mean_terms, z["ws"]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, media_dir):
    """The plain fp32 run on the GPU, once for every comparison."""
    return run(tmp_path_factory.mktemp("cuda"), media_dir, "fp32", device="cuda")


def test_the_gpu_computes_what_the_cpu_does(fp32, tmp_path, media_dir):
    cpu_terms, cpu_ws = run(tmp_path, media_dir, "cpu")
    terms, ws = fp32
    assert terms.keys() == cpu_terms.keys()
    for k, v in cpu_terms.items():
        assert terms[k] == pytest.approx(v, rel=0.05, abs=1e-4), k
    assert np.abs(ws - cpu_ws).max() < 0.05


@pytest.mark.parametrize("settings", [
    {"schedule.cuda_autocast": "bf16"},
    {"schedule.cuda_channels_last": True},
    {"schedule.cuda_compile": True},
    {"schedule.cuda_autocast": "bf16", "schedule.cuda_channels_last": True, "schedule.cuda_compile": True},
], ids=["bf16", "channels_last", "compile", "all"])
def test_each_cuda_option_keeps_the_result(fp32, tmp_path, media_dir, settings):
    """bf16 changes the networks' arithmetic, not the optimisation (latents stay fp32): the losses stay within
    a tenth of fp32's; channels-last and compile change only the memory layout and kernels."""
    terms, ws = run(tmp_path, media_dir, "opt", device="cuda", **settings)
    ref_terms, ref_ws = fp32
    assert ws.dtype == np.float32 and np.isfinite(ws).all()
    tolerance = 0.1 if "schedule.cuda_autocast" in settings else 0.02
    for k, v in ref_terms.items():
        assert terms[k] == pytest.approx(v, rel=tolerance, abs=1e-4), k


def test_lbfgs_frames_run_on_the_gpu(fp32, tmp_path, media_dir):
    terms, ws = run(tmp_path, media_dir, "lbfgs", device="cuda", **{"schedule.optimizer": "lbfgs"})
    assert np.isfinite(ws).all() and terms["landmark"] < 2 * fp32[0]["landmark"]
