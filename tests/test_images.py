import numpy as np
import pytest
import torch

from stylepuppet.images import draw_points, labelled_row, stamp_untrained, to_tensor, to_uint8, to_unit, upscale


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


def test_upscale_enlarges_small_frames_only():
    small = np.zeros((64, 48, 3), np.uint8)
    small[:, 24:] = 200
    big = upscale(small, 256)
    assert big.shape == (341, 256, 3) and big[:, :120].max() < 10 and big[:, 136:].min() > 190
    frame = np.zeros((300, 400, 3), np.uint8)
    assert upscale(frame, 256).shape == frame.shape


def test_labelled_row_puts_each_caption_over_its_panel():
    panels = [np.full((64, 80, 3), v, np.uint8) for v in (50, 150)]
    row = labelled_row(panels, ["left", "right"])
    strip = row.shape[0] - 64
    assert row.shape[1] == 160 and strip > 0 and row.shape[0] % 2 == 0
    assert (row[strip:, :80] == 50).all() and (row[strip:, 80:] == 150).all()
    for x0 in (0, 80):  # light caption text, centred in each panel's part of the strip
        text = np.argwhere(row[:strip, x0:x0 + 80].max(axis=-1) > 150)
        assert len(text) and 20 < text[:, 1].mean() < 60
    with pytest.raises(ValueError, match="one label per panel"):
        labelled_row(panels, ["only one"])
