"""Tests for training/seamless.py: a seamless clone keeps the source's structure and loses its seam."""

import numpy as np

from training.seamless import seamless_clone


def _scene(channels: int = 3, size: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = 0.3 + 0.4 * rng.random((channels, size, size))
    region = np.zeros((size, size), dtype=bool)
    region[10:30, 12:32] = True
    bump = np.zeros((size, size))
    bump[17:23, 19:25] = 0.2  # well inside the region: zero on its edge
    return image, region, bump


def test_outside_the_region_the_image_is_untouched():
    image, region, bump = _scene()
    out = seamless_clone(image, image + bump + 0.25, region)
    assert np.array_equal(out[:, ~region], image[:, ~region].astype(np.float32))


def test_a_brightness_step_vanishes_and_the_structure_stays():
    # The source is the image plus a structure plus a uniform step: the clone keeps the structure
    # and drops the step, since the step has no gradient inside and the edge must meet the image.
    image, region, bump = _scene()
    out = seamless_clone(image, image + bump + 0.25, region)
    np.testing.assert_allclose(out, image + bump, atol=1e-4)


def test_a_pasted_patch_meets_the_image_at_its_edge():
    image, region, _ = _scene(channels=1)
    source = np.full_like(image, 0.9)
    out = seamless_clone(image, source, region)
    # A uniform source has no structure: the clone interpolates the surrounding image smoothly,
    # so no pixel of the region gets near the source's brightness.
    assert np.abs(out[:, region] - 0.9).min() > 0.1
    edge = region & ~np.roll(region, 1, axis=0)  # top row of the region
    outside = np.roll(edge, -1, axis=0)
    assert np.abs(out[0][edge] - image[0][outside]).max() < 0.2


def test_empty_and_whole_image_regions():
    image, _, bump = _scene(channels=1)
    empty = np.zeros(image.shape[1:], dtype=bool)
    assert np.array_equal(seamless_clone(image, image + bump, empty), image.astype(np.float32))
    whole = np.ones(image.shape[1:], dtype=bool)  # nothing outside to meet: the source as it is
    np.testing.assert_allclose(
        seamless_clone(image, image + bump, whole), np.clip(image + bump, 0, 1), atol=1e-4
    )


def test_output_is_float32_in_range():
    image, region, bump = _scene()
    out = seamless_clone(image, image + 3 * bump, region)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
