"""Tests for training/anomaly_synthesis.py: the masks are exactly what was pasted."""

import numpy as np
import pytest
import torch

from training.anomaly_synthesis import (
    MIN_CHANGE,
    SOURCES,
    anomaly_source,
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
