"""Tests for models/imageio.py: every common Pillow mode becomes uint8 RGB or L the same way."""

import warnings

import numpy as np
import pytest
from PIL import Image

from models.imageio import to_array


@pytest.mark.parametrize(("color_mode", "channels"), [("RGB", 3), ("L", 1)])
def test_shape_and_dtype(color_mode, channels):
    image = Image.new("RGB", (7, 5), (10, 20, 30))
    array = to_array(image, color_mode)
    assert array.shape == (5, 7, channels)
    assert array.dtype == np.uint8
    assert array.flags.writeable


def test_grayscale_to_rgb_and_back():
    gray = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8), "L")
    assert to_array(gray, "RGB")[0].tolist() == [[0, 0, 0], [100, 100, 100], [255, 255, 255]]
    assert to_array(gray, "L")[0, :, 0].tolist() == [0, 100, 255]


def test_rgba_is_composited_on_black():
    rgba = Image.new("RGBA", (2, 2), (200, 100, 50, 128))
    assert to_array(rgba, "RGB")[0, 0].tolist() == [100, 50, 25]  # value · 128/255
    opaque = Image.new("RGBA", (2, 2), (200, 100, 50, 255))
    assert to_array(opaque, "RGB")[0, 0].tolist() == [200, 100, 50]
    clear = Image.new("RGBA", (2, 2), (200, 100, 50, 0))
    assert to_array(clear, "RGB")[0, 0].tolist() == [0, 0, 0]


def test_palette_images_are_expanded_and_transparency_is_black():
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putpixel((1, 0), 1)
    assert to_array(image, "RGB")[0].tolist() == [[10, 20, 30], [200, 100, 50]]
    image.info["transparency"] = 1
    assert to_array(image, "RGB")[0].tolist() == [[10, 20, 30], [0, 0, 0]]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_is_scaled_not_clipped(tmp_path, suffix):
    data = np.array([[0, 32767, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(data).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        assert to_array(image, "L")[0, :, 0].tolist() == [0, 127, 128, 255]
    with Image.open(path) as image:
        assert to_array(image, "RGB")[0, 3].tolist() == [255, 255, 255]


def test_cmyk_is_converted():
    def rgb(cmyk):
        return to_array(Image.new("CMYK", (1, 1), cmyk), "RGB")[0, 0].tolist()

    assert rgb((0, 0, 0, 0)) == [255, 255, 255]
    assert rgb((0, 0, 0, 255)) == [0, 0, 0]
    assert rgb((255, 0, 0, 0)) == [0, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    with Image.open(path) as loaded:
        assert loaded.size == (40, 20)  # stored unrotated
        array = to_array(loaded, "RGB")
    assert array.shape == (40, 20, 3)  # displayed upright: portrait
    assert array[:15].min() > 230  # the white half is now on top
    assert array[25:].max() < 25


def test_unknown_color_mode_raises():
    with pytest.raises(ValueError, match="color_mode"):
        to_array(Image.new("RGB", (2, 2)), "CMYK")


def test_dark_16_bit_frame_uses_the_same_mapping():
    # A 16-bit image whose values all sit below 256 is still 16-bit data: it maps to near black,
    # exactly as the same pixels would inside a brighter frame.
    dark = Image.fromarray(np.array([[0, 255, 256, 511]], dtype=np.uint16))
    assert to_array(dark, "L")[0, :, 0].tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(("color_mode", "channels"), [("RGB", 3), ("L", 1)])
def test_cielab_converts_to_either_mode(color_mode, channels):
    lab = Image.frombytes("LAB", (3, 2), bytes(range(18)))
    assert to_array(lab, color_mode).shape == (2, 3, channels)


def test_float_image_maps_nan_and_infinities_to_black_and_white():
    data = np.array([[np.nan, np.inf, -np.inf, 300.0, -5.0, 100.4]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        assert to_array(Image.fromarray(data), "L")[0, :, 0].tolist() == [0, 255, 0, 255, 0, 100]
