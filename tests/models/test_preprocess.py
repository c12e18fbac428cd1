"""Tests for models/preprocess.py: the one resize shared by training, evaluation and the service."""

import pytest
import torch

from models.preprocess import Region, model_region, to_image_size, to_model_input


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
