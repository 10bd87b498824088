import numpy as np
import torch

from stylepuppet.images import draw_points, stamp_untrained, to_tensor, to_uint8, to_unit


def test_to_uint8_rounds_as_nvidias_generate_and_round_trips_with_to_tensor():
    images = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.003, 0.5, 1.0, 1.2]).view(1, 1, 2, 4).expand(1, 3, 2, 4)
    frame = to_uint8(images)
    assert frame.dtype == np.uint8 and frame.shape == (1, 2, 4, 3)
    expected = np.clip(images[0, 0].numpy() * 127.5 + 128, 0, 255).astype(np.uint8)  # truncation after +128
    assert np.array_equal(frame[0, ..., 1], expected)
    again = to_uint8(to_tensor(frame[0]))
    assert np.array_equal(again, frame)
    assert torch.equal(to_unit(torch.tensor([-1.0, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))


def test_draw_points_marks_a_copy_with_dots_and_outlines():
    frame = np.zeros((32, 32, 3), np.uint8)
    dots = draw_points(frame, np.array([[5.0, 5.0], [25.0, 5.0]]), radius=1.0)
    assert not frame.any()  # the input is untouched
    assert tuple(dots[5, 5]) == (0, 255, 0) and tuple(dots[5, 25]) == (0, 255, 0) and not dots[5, 15].any()
    joined = draw_points(frame, np.array([[5.0, 5.0], [25.0, 5.0]]), radius=1.0, lines=[(0, 1)])
    assert tuple(joined[5, 15]) == (0, 255, 0)


def test_untrained_stamp_changes_the_top_rows_only():
    frame = np.full((64, 64, 3), 90, np.uint8)
    stamped = stamp_untrained(frame)
    assert stamped.shape == frame.shape
    assert (stamped[:8] != frame[:8]).any() and (stamped[32:] == frame[32:]).all()
