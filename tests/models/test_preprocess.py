"""Tests for models/preprocess.py: the one resize shared by training, evaluation and the service."""

import pytest
import torch

from models.preprocess import to_image_size, to_model_input


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
