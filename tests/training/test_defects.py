"""Tests for training/defects.py: every painter's mask is exactly the set of pixels it changed."""

import numpy as np
import pytest

from training.defects import DEFECTS, MIN_VISIBLE_CHANGE
from training.synth import to_uint8
from training.textures import KINDS, make_texture

SEEDS = (0, 1, 2)


def _texture(kind: str, seed: int, size: int = 64) -> np.ndarray:
    return make_texture(kind, (size, size), np.random.default_rng([seed, 99]))


def test_registry_names_the_five_defects():
    assert list(DEFECTS) == ["scratch", "crack", "spot", "hole", "contamination"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(DEFECTS))
def test_mask_is_exactly_the_changed_pixels(name, kind):
    for seed in SEEDS:
        image = _texture(kind, seed)
        before = image.copy()
        out, mask = DEFECTS[name](image, np.random.default_rng(seed))

        np.testing.assert_array_equal(image, before)  # input left alone
        assert out.dtype == np.float32 and out.shape == image.shape
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        assert out.min() >= 0.0 and out.max() <= 1.0
        changed = np.abs(out - image).max(axis=-1)
        np.testing.assert_array_equal(mask, changed > 1e-6)
        assert mask.any()
        assert changed[mask].min() >= MIN_VISIBLE_CHANGE
        np.testing.assert_array_equal(out[~mask], image[~mask])  # untouched bit for bit


@pytest.mark.parametrize("name", list(DEFECTS))
def test_mask_stays_exact_after_8_bit_rounding(name):
    # The ground-truth PNGs are written against 8-bit images.
    for seed in SEEDS:
        image = to_uint8(_texture("metal", seed)).astype(np.float32) / 255
        out, mask = DEFECTS[name](image, np.random.default_rng(seed))
        changed = (to_uint8(out) != to_uint8(image)).any(axis=-1)
        np.testing.assert_array_equal(mask, changed)


@pytest.mark.parametrize("name", list(DEFECTS))
def test_mask_is_exact_even_on_saturated_noise(name):
    # Pixels at 0 or 1 cannot move in one direction; the mask must still match what moved.
    rng = np.random.default_rng(7)
    image = rng.choice([0.0, 1.0, 0.5], size=(48, 48, 3)).astype(np.float32)
    out, mask = DEFECTS[name](image, np.random.default_rng(3))
    np.testing.assert_array_equal(mask, np.abs(out - image).max(axis=-1) > 1e-6)


@pytest.mark.parametrize("name", list(DEFECTS))
def test_defect_lies_fully_inside_the_smallest_image(name):
    for seed in range(8):
        image = _texture("tile", seed, size=32)
        _, mask = DEFECTS[name](image, np.random.default_rng(seed))
        assert mask.any()
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert not border.any()


@pytest.mark.parametrize("name", list(DEFECTS))
def test_same_generator_same_defect_and_seeds_vary_it(name):
    image = _texture("fabric", 0)
    first, first_mask = DEFECTS[name](image, np.random.default_rng(5))
    again, again_mask = DEFECTS[name](image, np.random.default_rng(5))
    _, other_mask = DEFECTS[name](image, np.random.default_rng(6))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_mask, again_mask)
    assert not np.array_equal(first_mask, other_mask)


def test_painter_rejects_wrong_image_shape():
    with pytest.raises(ValueError, match="image"):
        DEFECTS["spot"](np.zeros((64, 64)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 32"):
        DEFECTS["spot"](np.zeros((16, 16, 3)), np.random.default_rng(0))
