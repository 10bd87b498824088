import av
import numpy as np
import pytest
import torch

from stylepuppet.evaluation import evaluate_run, write_side_by_side
from stylepuppet.evaluation.measures import pearson
from stylepuppet.generators.loader import load_latent_generator
from stylepuppet.video import open_frames


@pytest.fixture(scope="module")
def run(models_dir, media_dir):
    G = load_latent_generator(models_dir / "digiface_dcgan64_G.pt", "w")
    z = G.candidate_latents(2, torch.Generator().manual_seed(3))
    t = torch.linspace(0, 1, 6).view(6, 1, 1)
    latents = G.constrain(z[0] * (1 - t) + z[1] * t)
    with open_frames(media_dir / "d0.mp4", start=14, max_frames=6) as source:  # the mouth opens here
        frames = list(source)
    evaluation, outputs = evaluate_run(G, latents, frames, walks=3, seed=0)
    return G, latents, frames, evaluation, outputs


def test_figures_are_consistent(run):
    G, latents, frames, ev, outputs = run
    assert outputs.shape == (6, 64, 64, 3) and outputs.dtype == np.uint8
    assert ev.frames == 6 and ev.driver.missed == 0
    assert ev.correlation == pytest.approx(pearson(ev.driver_ratio, ev.output_ratio))
    assert ev.driver_ratio[-1] > ev.driver_ratio[0] + 0.05
    assert ev.walk_correlations.shape == (3,)
    first = int(np.argmax(ev.output.found))
    assert ev.identity_distance[first] == 0
    assert np.isfinite(ev.output_jitter) or ev.output.missed > 0
    text = "\n".join(ev.lines())
    for word in ("correlation", "random walks (3", "identity drift", "jitter"):
        assert word in text


def test_side_by_side_video_decodes(run, tmp_path):
    G, latents, frames, ev, outputs = run
    path = write_side_by_side(tmp_path / "sbs.mp4", frames, outputs, ev, fps=25)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (256, 512, 3)


def test_mismatched_lengths_are_refused(run):
    G, latents, frames, *_ = run
    with pytest.raises(ValueError, match="6 latents but 5 driving frames"):
        evaluate_run(G, latents, frames[:5])


def test_side_by_side_shows_a_face_window_reaching_past_the_frame_edge(run, tmp_path):
    G, latents, frames, ev, outputs = run
    shifted = [np.ascontiguousarray(f[:, f.shape[1] // 3:]) for f in frames]  # the face now sits near the left edge
    moved = ev.driver.points.copy()
    moved[..., 0] -= frames[0].shape[1] // 3
    ev_moved = type(ev)(type(ev.driver)(moved, ev.driver.found, None), ev.output, ev.correlation,
                        ev.walk_correlations, ev.walk_missed, ev.identity_distance)
    path = write_side_by_side(tmp_path / "edge.mp4", shifted, outputs, ev_moved, fps=25)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (256, 512, 3)
