import numpy as np
import pytest
from PIL import Image

from stylepuppet.evaluation.judge import DlibJudge
from stylepuppet.evaluation.measures import SAME_PERSON_DISTANCE
from stylepuppet.face.detect import dlib_models_dir
from stylepuppet.video import open_frames


@pytest.fixture(scope="module")
def judge():
    return DlibJudge(size=256)


def _frames(path, count, start=0):
    with open_frames(path, start=start, max_frames=count) as source:
        return list(source)


def test_models_are_found_without_importing_the_package():
    assert (dlib_models_dir() / "shape_predictor_68_face_landmarks.dat").is_file()


def test_judge_finds_faces_and_tells_people_apart(judge, media_dir):
    d0 = _frames(media_dir / "d0.mp4", 2) + _frames(media_dir / "d0.mp4", 1, start=40)
    d3 = _frames(media_dir / "d3.mp4", 1)
    seen = judge.measure(d0 + d3, describe=True)
    assert seen.found.all() and seen.missed == 0
    assert seen.points.shape == (4, 68, 2) and seen.descriptors.shape == (4, 128)
    same = np.linalg.norm(seen.descriptors[0] - seen.descriptors[2])  # one man, mouth closed vs smiling
    other = np.linalg.norm(seen.descriptors[0] - seen.descriptors[3])  # a different person
    assert same < SAME_PERSON_DISTANCE < other
    # points lie on the face: the mouth is below the eyes, inside the frame
    assert (seen.points[:, 62, 1] > seen.points[:, 36, 1]).all()
    assert (seen.points >= 0).all() and (seen.points < 512).all()


def test_small_frames_are_upscaled_and_empty_frames_counted(judge, media_dir):
    frame = _frames(media_dir / "d0.mp4", 1)[0]
    small = np.asarray(Image.fromarray(frame).resize((128, 128), Image.LANCZOS))
    assert judge.prepare(small).shape == (256, 256, 3)
    assert judge.prepare(frame).shape == frame.shape
    blank = np.full((64, 64, 3), 128, np.uint8)
    seen = judge.measure([small, blank], describe=True)
    assert seen.found.tolist() == [True, False] and seen.missed == 1
    assert np.isnan(seen.points[1]).all() and np.isnan(seen.descriptors[1]).all()
    big = judge.measure([frame]).points[0]
    # the upscaled small frame's points, mapped back to full-size pixels, agree with the full-size ones
    mapped = (seen.points[0] + 0.5) * (512 / 256) - 0.5
    assert np.median(np.linalg.norm(mapped - big, axis=-1)) < 6
