import subprocess
import sys

import av
import pytest
import torch

from stylepuppet.animation.render import save_latents
from stylepuppet.animation.state import RunState
from stylepuppet.cli import run
from stylepuppet.config import AnimateConfig
from stylepuppet.generators.loader import load_latent_generator


@pytest.fixture
def out_dir(tmp_path, models_dir, media_dir):
    network = models_dir / "digiface_dcgan64_G.pt"
    G = load_latent_generator(network, "w")
    noise = torch.randn(5, 1, 100, generator=torch.Generator().manual_seed(0))
    ws = G.constrain(G.mean_latent().view(1, 1, -1) + 0.3 * noise)
    cfg = AnimateConfig(mode="free", space="w", network=str(network), start=10, max_frames=5)
    out = tmp_path / "run"
    out.mkdir()
    save_latents(out / "latents.npz", ws, RunState("x", list(ws), {}, {}), cfg, 25.0, audio=str(media_dir / "d0.mp4"))
    return out


def test_evaluate_prints_the_figures_and_writes_the_video(out_dir, media_dir, capsys):
    assert run(["evaluate", str(out_dir), "--driving", str(media_dir / "d0.mp4"), "--walks", "2"]) == 0
    text = capsys.readouterr().out
    for line in ("frames: 5", "mouth-opening correlation", "random walks (2, same step sizes)", "identity drift",
                 "landmark jitter", f"side-by-side video: {out_dir / 'evaluation.mp4'}"):
        assert line in text
    with av.open(str(out_dir / "evaluation.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5


def test_evaluate_errors_are_one_line(tmp_path, out_dir, media_dir):
    cmd = [sys.executable, "-m", "stylepuppet", "evaluate", str(tmp_path / "nothing"), "--driving",
           str(media_dir / "d0.mp4")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.startswith("error: latents file not found")
    assert "Traceback" not in res.stderr
    short = tmp_path / "short"
    with av.open(str(media_dir / "d0.mp4")) as src, av.open(str(short) + ".mp4", "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i >= 12:
                break
            for packet in stream.encode(frame.reformat(64, 64)):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    res = subprocess.run(cmd[:4] + [str(out_dir), "--driving", str(short) + ".mp4"], capture_output=True, text=True)
    assert res.returncode == 1 and "the run has 5" in res.stderr and "Traceback" not in res.stderr
