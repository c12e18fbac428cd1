"""The overlay: untouched where normal, tinted where anomalous, the mask's boundary outlined."""

import numpy as np

from app.colormap import INFERNO
from app.overlay import ALPHA, HEAT_START, OUTLINE_COLOR, outline, outline_width, render_overlay


def test_shape_and_a_normal_image_left_untouched():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    quiet = np.full((30, 40), HEAT_START, dtype=np.uint8)  # half the threshold: no tint yet
    overlay = render_overlay(image, quiet, np.zeros((30, 40), dtype=bool))
    assert overlay.shape == (30, 40, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay, image)
    assert overlay is not image


def test_grey_images_become_rgb():
    grey = np.full((5, 6, 1), 77, dtype=np.uint8)
    overlay = render_overlay(grey, np.zeros((5, 6), np.uint8), np.zeros((5, 6), bool))
    assert overlay.shape == (5, 6, 3) and (overlay == 77).all()


def test_strong_anomalies_are_tinted_with_the_colormap():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    levels = np.zeros((4, 4), dtype=np.uint8)
    levels[0, 0] = 255
    overlay = render_overlay(image, levels, np.zeros((4, 4), bool))
    alpha = ALPHA[255] / 256
    np.testing.assert_allclose(overlay[0, 0], INFERNO[255] * alpha, atol=1)
    assert (overlay[1:, :] == 0).all()


def test_opacity_grows_with_the_map_from_half_the_threshold():
    assert ALPHA[: HEAT_START + 1].max() == 0
    assert (np.diff(ALPHA.astype(int)) >= 0).all()
    assert 0 < ALPHA[128] < ALPHA[255] <= 256


def test_outline_is_the_mask_boundary():
    mask = np.zeros((12, 14), dtype=bool)
    mask[3:9, 4:11] = True
    band = outline(mask, width=1)
    expected = mask.copy()
    expected[4:8, 5:10] = False  # the interior, one pixel in from every side
    np.testing.assert_array_equal(band, expected)
    assert not outline(np.zeros((5, 5), bool)).any()


def test_a_defect_touching_the_border_is_closed_along_it():
    mask = np.zeros((6, 6), dtype=bool)
    mask[:3, :3] = True
    band = outline(mask)
    assert band[0, :3].all() and band[:3, 0].all()
    assert not band[1, 1]


def test_outline_is_drawn_over_the_overlay_and_widens_with_the_image():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    overlay = render_overlay(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8), mask)
    drawn = (overlay == OUTLINE_COLOR).all(axis=2)
    np.testing.assert_array_equal(drawn, outline(mask, 1))
    assert outline_width(20, 20) == 1 and outline_width(4000, 3000) == 10
