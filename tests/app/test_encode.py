"""PNG encoding: the mask is 1-bit, the map 8-bit grey, the overlay RGB; Pillow decodes each to
exactly what went in, at odd sizes too."""

import io

import numpy as np
import pytest
from PIL import Image

from app.encode import encode_png, to_base64


def decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


def test_mask_is_a_1_bit_png_white_on_defects():
    mask = np.zeros((7, 9), dtype=bool)  # 9 columns: the second byte of each row is partly padding
    mask[2:4, 3:9] = True
    image = decode(encode_png(mask))
    assert image.mode == "1" and image.size == (9, 7)
    np.testing.assert_array_equal(np.asarray(image.convert("L")), mask * 255)


@pytest.mark.parametrize("shape", [(1, 1), (1, 13), (13, 1), (31, 17), (64, 200)])
def test_random_arrays_of_every_kind_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) > 0.5
    grey = rng.integers(0, 256, shape, dtype=np.uint8)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(decode(encode_png(mask))), mask)
    np.testing.assert_array_equal(np.asarray(decode(encode_png(grey))), grey)
    np.testing.assert_array_equal(np.asarray(decode(encode_png(rgb))), rgb)


def test_smooth_maps_compress_well():
    y, x = np.mgrid[:256, :256]
    smooth = ((np.sin(x / 20) + np.cos(y / 30)) * 60 + 128).astype(np.uint8)
    assert len(encode_png(smooth)) < smooth.size / 4


def test_map_and_overlay_round_trip():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert decode(encode_png(levels)).mode == "L"
    np.testing.assert_array_equal(np.asarray(decode(encode_png(levels))), levels)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(decode(encode_png(rgb))), rgb)


def test_non_contiguous_arrays_are_fine():
    mask = np.zeros((8, 8), dtype=bool)
    mask[::2] = True
    np.testing.assert_array_equal(np.asarray(decode(encode_png(mask.T))), mask.T)


@pytest.mark.parametrize(
    "array", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)]
)
def test_other_arrays_are_refused(array):
    with pytest.raises(ValueError, match="cannot encode"):
        encode_png(array)


def test_base64_is_ascii():
    assert to_base64(b"\x89PNG") == "iVBORw=="
