"""Tests for training/anomaly_synthesis.py: the masks are exactly what was pasted."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from training.anomaly_synthesis import (
    MIN_CHANGE,
    MIN_NEIGHBOURS,
    SOURCES,
    anomaly_source,
    connected,
    perlin_region,
    stroke_region,
    synthesize,
    synthesize_batch,
)


def _images(channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((channels, 48, 48), dtype=np.float32), rng.random((channels, 48, 48), dtype=np.float32)


@pytest.mark.parametrize("seamless", [0.0, 1.0])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("seed", range(6))
def test_mask_is_exactly_the_changed_pixels(channels, seed, seamless):
    image, other = _images(channels, seed)
    out, mask = synthesize(image, other, np.random.default_rng(seed), seamless)
    changed = np.abs(out - image).max(axis=0) > 0
    assert mask.any()
    assert np.array_equal(mask, changed)
    assert (np.abs(out - image).max(axis=0)[mask] >= MIN_CHANGE).all()  # visible, not a rounding ghost
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_connected_drops_specks_and_keeps_lines_and_blobs():
    changed = np.zeros((20, 20), dtype=bool)
    changed[2, 2] = changed[2, 4] = True  # specks, each with no changed neighbour ...
    changed[10, 10:12] = True  # ... or one
    changed[5, 3:18] = True  # a line one pixel wide
    changed[12:17, 12:17] = True  # a blob
    kept = connected(changed)
    assert not kept[2, 2] and not kept[2, 4] and not kept[10, 10:12].any()
    assert kept[5, 4:17].all() and not kept[5, 3] and not kept[5, 17]  # the line loses its two ends
    assert kept[12:17, 12:17].all()
    neighbours = ndimage.convolve(changed.astype(int), np.ones((3, 3), int), mode="constant") - 1
    assert np.array_equal(kept, changed & (neighbours >= MIN_NEIGHBOURS))


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_has_the_image_shape(source):
    image, other = _images(3)
    filled = anomaly_source(image, other, np.random.default_rng(0), source)
    assert filled.shape == image.shape


def test_regions_have_the_promised_size():
    rng = np.random.default_rng(1)
    blobs = [perlin_region(64, rng).mean() for _ in range(20)]
    assert all(0.001 <= area <= 0.2 for area in blobs)
    stroke = stroke_region(64, rng)
    assert 0 < stroke.mean() < 0.2


def test_batch_probability_and_determinism():
    images = torch.rand(8, 3, 32, 32)
    none, masks = synthesize_batch(images, np.random.default_rng(0), probability=0.0)
    assert torch.equal(none, images) and masks.sum() == 0
    a, ma = synthesize_batch(images, np.random.default_rng(5), probability=1.0)
    b, mb = synthesize_batch(images, np.random.default_rng(5), probability=1.0)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert (ma.flatten(1).sum(1) > 0).all()
    assert torch.equal(((a - images).abs().amax(1) > 0).float(), ma)
