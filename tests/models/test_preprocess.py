"""Tests for models/preprocess.py: the one resize shared by training, evaluation and the service."""

import pytest
import torch

from models.preprocess import (
    Region,
    check_roi,
    crop_roi,
    model_region,
    roi_region,
    to_image_size,
    to_model_input,
)


def test_any_sizes_become_one_square_batch_in_unit_range():
    torch.manual_seed(0)
    images = [
        torch.randint(0, 256, (30, 50, 3), dtype=torch.uint8),
        torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8),
        torch.randint(0, 256, (24, 24, 3), dtype=torch.uint8),
    ]
    batch = to_model_input(images, 24)
    assert batch.shape == (3, 3, 24, 24)
    assert batch.dtype == torch.float32
    assert batch.min() >= 0 and batch.max() <= 1
    # the right size is not resized: exactly value / 255, channels first
    assert torch.equal(batch[2], images[2].permute(2, 0, 1).float() / 255)


def test_uint8_extremes_map_to_zero_and_one():
    white = torch.full((40, 60, 1), 255, dtype=torch.uint8)
    black = torch.zeros((10, 10, 1), dtype=torch.uint8)
    batch = to_model_input([white, black], 16)
    assert batch.shape == (2, 1, 16, 16)
    assert torch.allclose(batch[0], torch.ones(1, 16, 16), atol=1e-6)  # resampled: rounding only
    assert torch.all(batch[1] == 0.0)
    same_size = to_model_input([torch.tensor([[[255], [0]], [[0], [255]]], dtype=torch.uint8)], 2)
    assert same_size[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_a_constant_image_stays_constant_when_resized():
    grey = torch.full((33, 17, 3), 128, dtype=torch.uint8)
    assert torch.allclose(to_model_input([grey], 12), torch.full((1, 3, 12, 12), 128 / 255), atol=1e-6)


def test_input_images_are_not_modified():
    image = torch.full((4, 4, 3), 200, dtype=torch.uint8)
    to_model_input([image], 4)
    assert torch.all(image == 200)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="at least one image"):
        to_model_input([], 8)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        to_model_input([torch.zeros(8, 8, dtype=torch.uint8)], 8)


def test_to_image_size():
    amap = torch.rand(8, 8)
    assert to_image_size(amap, 8, 8) is amap
    resized = to_image_size(amap, 20, 12)
    assert resized.shape == (20, 12)
    assert amap.min() - 1e-6 <= resized.min() and resized.max() <= amap.max() + 1e-6  # bilinear: no overshoot
    assert torch.allclose(to_image_size(torch.full((8, 8), 0.25), 31, 5), torch.full((31, 5), 0.25))


def test_stretch_fills_the_square_and_letterbox_keeps_the_aspect_ratio():
    assert model_region(30, 60, 12, "stretch") == Region(0, 0, 12, 12)
    assert model_region(30, 60, 12, "letterbox") == Region(3, 0, 6, 12)  # 2:1 kept, centred
    assert model_region(90, 30, 12, "letterbox") == Region(0, 4, 12, 4)
    assert model_region(50, 50, 12, "letterbox") == Region(0, 0, 12, 12)  # square: no padding
    assert model_region(1, 500, 12, "letterbox").height == 1  # never an empty region
    with pytest.raises(ValueError, match="resize must be one of"):
        model_region(10, 10, 12, "crop")


def test_letterbox_puts_the_image_in_its_region_and_mirrors_it_around():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (6, 12, 1), dtype=torch.uint8)  # exactly half the square's height
    batch = to_model_input([image], 12, "letterbox")[0, 0]  # (12, 12)
    top, left, h, w = model_region(6, 12, 12, "letterbox")
    assert (top, left, h, w) == (3, 0, 6, 12)
    inside = batch[top : top + h]
    assert torch.equal(inside, image[:, :, 0].float() / 255)  # the right width: not resampled
    for k in (1, 2, 3):  # reflection without repeating the edge row
        assert torch.equal(batch[top - k], inside[k])
        assert torch.equal(batch[top + h - 1 + k], inside[h - 1 - k])


def test_letterbox_pads_a_very_long_image_by_mirror_tiling():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (2, 24, 1), dtype=torch.uint8)  # 12:1, a band far wider than the image
    batch = to_model_input([image], 24, "letterbox")
    assert batch.shape == (1, 1, 24, 24)
    rows = {tuple(row.tolist()) for row in batch[0, 0]}
    assert rows == {tuple(r.tolist()) for r in image[:, :, 0].float() / 255}  # only the image's own rows
    thin = to_model_input([torch.full((1, 40, 3), 77, dtype=torch.uint8)], 8, "letterbox")
    assert torch.allclose(thin, torch.full((1, 3, 8, 8), 77 / 255))  # one row: nothing to mirror, repeated


def test_a_letterboxed_map_returns_to_the_image_without_its_padding():
    amap = torch.zeros(12, 12)
    amap[3:9] = torch.arange(12.0)  # the image's region of a 6 × 12 image holds a ramp, padding 0
    assert torch.equal(to_image_size(amap, 6, 12, "letterbox"), amap[3:9])
    back = to_image_size(amap, 30, 60, "letterbox")
    assert back.shape == (30, 60)
    assert back.min() >= 0 and back[:, -1].min() > 10  # no padding value bled in at any edge
    assert torch.allclose(back[0], back[-1])  # every row the same ramp: the region was cut exactly
    assert torch.equal(to_image_size(amap, 12, 12, "letterbox"), amap)


def test_exposure_normalisation_brings_a_darker_shot_to_the_same_input():
    torch.manual_seed(0)
    bright = torch.randint(60, 200, (30, 40, 1), dtype=torch.uint8)
    dark = (bright.float() * 0.4).round().to(torch.uint8)  # the same part, 40 % of the exposure
    level = 0.3
    batch = to_model_input([bright, dark], 16, exposure_mean=level)
    assert batch[0].mean() == pytest.approx(level, abs=1e-4)
    assert batch[1].mean() == pytest.approx(level, abs=1e-4)
    assert torch.allclose(batch[0], batch[1], atol=3 / 255)  # the dark shot's uint8 rounding only
    plain = to_model_input([bright, dark], 16)
    assert (plain[0] - plain[1]).abs().mean() > 0.1  # unnormalised, the two differ


def test_exposure_gain_keeps_colours_clips_and_is_bounded():
    image = torch.zeros(8, 8, 3, dtype=torch.uint8)
    image[..., 0], image[..., 1] = 40, 20  # a red-brown part, no blue
    x = to_model_input([image], 8, exposure_mean=0.2)[0]
    assert x[0].mean() == pytest.approx(0.4, abs=1e-5)  # gain 0.2 / (20 / 255) on every channel
    assert x[1].mean() == pytest.approx(0.2, abs=1e-5) and torch.all(x[2] == 0)
    saturating = to_model_input([torch.full((4, 4, 1), 250, dtype=torch.uint8)], 4, exposure_mean=0.99)
    assert saturating.max() <= 1.0
    black = to_model_input([torch.zeros(6, 6, 1, dtype=torch.uint8)], 6, exposure_mean=0.5)
    assert torch.all(black == 0)  # no division by zero; nothing to amplify
    faint = to_model_input([torch.ones(6, 6, 1, dtype=torch.uint8)], 6, exposure_mean=0.9)
    assert faint.max() == pytest.approx(16 / 255)  # a near-black frame gains at most 16×


def test_exposure_is_measured_on_the_image_not_its_letterbox_band():
    rows = torch.tensor([0, 0, 0, 0, 0, 0, 40, 80], dtype=torch.uint8)
    image = rows[:, None, None].expand(8, 24, 1).contiguous()  # bright along its bottom edge only
    x = to_model_input([image], 24, "letterbox", exposure_mean=0.1)[0, 0]
    top, left, h, w = model_region(8, 24, 24, "letterbox")
    assert x[top : top + h, left : left + w].mean() == pytest.approx(0.1, abs=1e-4)
    assert abs(float(x.mean()) - 0.1) > 0.01  # the mirrored band is brighter: it must not count


def test_a_region_of_interest_is_checked_and_covers_every_pixel_it_touches():
    assert check_roi([0, 0.25, 1, 0.75]) == (0.0, 0.25, 1.0, 0.75)
    for bad in ([0.5, 0, 0.5, 1], [0, 0, 1.2, 1], [-0.1, 0, 1, 1], [0, 0.9, 1, 0.1], [0, 0, 1]):
        with pytest.raises(ValueError, match="region of interest"):
            check_roi(bad)
    assert roi_region(400, 300, (0.185, 0.1375, 0.8, 0.8625)) == Region(55, 55, 290, 185)  # 0.8 * 300 = 240
    assert roi_region(10, 10, (0.31, 0.0, 0.39, 1.0)) == Region(0, 3, 10, 1)  # inside one pixel: that pixel
    assert roi_region(10, 10, (0.99, 0.99, 1.0, 1.0)) == Region(9, 9, 1, 1)


def test_the_model_input_of_a_region_of_interest_is_that_box_of_the_image():
    image = torch.randint(0, 256, (40, 60, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    roi = (0.25, 0.5, 0.75, 1.0)  # columns 15..44, rows 20..39
    box = image[20:40, 15:45].contiguous()
    for resize in ("stretch", "letterbox"):
        assert torch.equal(to_model_input([image], 24, resize, roi=roi), to_model_input([box], 24, resize))


def test_the_crop_to_a_region_of_interest_is_a_view_of_the_image():
    image = torch.arange(40 * 60 * 3, dtype=torch.int32).reshape(40, 60, 3)
    crop = crop_roi(image, (0.25, 0.5, 0.75, 1.0))
    assert torch.equal(crop, image[20:40, 15:45])
    assert crop.untyped_storage().data_ptr() == image.untyped_storage().data_ptr()  # nothing copied
    assert crop_roi(image, None) is image


def test_a_region_of_interest_map_returns_into_its_box_and_is_zero_elsewhere():
    amap = torch.rand(16, 16, generator=torch.Generator().manual_seed(4)) + 0.5
    frame = to_image_size(amap, 40, 60, "letterbox", roi=(0.25, 0.5, 0.75, 1.0))
    assert frame.shape == (40, 60)
    assert torch.equal(frame[20:40, 15:45], to_image_size(amap, 20, 30, "letterbox"))
    frame[20:40, 15:45] = 0
    assert not frame.any()  # nothing was inspected outside the box
