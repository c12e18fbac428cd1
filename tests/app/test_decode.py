"""Decoding uploads: colour modes, 16-bit, alpha, palettes, EXIF orientation, bombs, bad files."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.decode import decode_image, header_pixels
from app.errors import InvalidInput, PayloadTooLarge
from tests.app.conftest import encode, random_image
from tests.app.hostile.corpus import png_bomb

LIMIT = 40_000_000


def decode(data: bytes, mode: str = "RGB", max_pixels: int = LIMIT) -> np.ndarray:
    return decode_image(data, mode, max_pixels)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width × height 8-bit grey pixels and holds almost no data (a bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_decode_exactly(fmt):
    image = random_image(13, 21)
    decoded = decode(encode(image, fmt))
    assert decoded.dtype == np.uint8 and decoded.shape == (13, 21, 3)
    np.testing.assert_array_equal(decoded, image)
    assert decoded.flags.writeable and decoded.flags.c_contiguous


def test_jpeg_decodes_close():
    image = np.full((16, 16, 3), 120, dtype=np.uint8)
    assert np.abs(decode(encode(image, "JPEG", quality=95)).astype(int) - 120).max() <= 2


def test_rgb_to_the_grey_mode_of_a_greyscale_checkpoint():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red → ITU-R 601 luma 0.299 × 255 ≈ 76
    decoded = decode(encode(image), mode="L")
    assert decoded.shape == (2, 2, 1)
    assert decoded[0, 0, 0] == 76


def test_grey_to_rgb_repeats_the_channel():
    grey = random_image(5, 6, channels=1)
    decoded = decode(encode(grey), mode="RGB")
    np.testing.assert_array_equal(decoded, np.repeat(grey, 3, axis=2))


def test_16_bit_grey_keeps_its_top_byte():
    wide = np.array([[0, 255, 256, 0x1234], [0x8000, 0xFF00, 0xFFFF, 512]], dtype=np.uint16)
    decoded = decode(encode(wide), mode="L")
    assert decoded[..., 0].tolist() == [[0, 0, 1, 0x12], [0x80, 0xFF, 0xFF, 2]]  # scaled, not clipped at 255


def test_alpha_is_composited_on_black_as_in_training():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (100, 200, 40)
    rgba[0, :, 3] = (255, 0, 128)  # opaque, transparent, half
    decoded = decode(encode(rgba))
    assert decoded[0, 0].tolist() == [100, 200, 40]
    assert decoded[0, 1].tolist() == [0, 0, 0]
    np.testing.assert_allclose(decoded[0, 2], [50, 100, 20], atol=1)


def test_palette_and_bilevel_images():
    palette = Image.fromarray(random_image(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    np.testing.assert_array_equal(decode(buffer.getvalue()), np.asarray(palette.convert("RGB")))
    bilevel = np.zeros((4, 4), dtype=bool)
    bilevel[1, 2] = True
    decoded = decode(encode(bilevel), mode="L")
    assert decoded[1, 2, 0] == 255 and decoded.sum() == 255


def test_exif_orientation_is_applied():
    image = random_image(10, 20)  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode(encode(image, "PNG", exif=exif))
    assert decoded.shape == (20, 10, 3)  # upright: portrait
    np.testing.assert_array_equal(decoded, np.rot90(image, k=-1))


def test_too_many_pixels_is_refused_from_the_header():
    with pytest.raises(PayloadTooLarge, match="30×40 = 1200 pixels, more than the 1000 allowed"):
        decode(encode(random_image(40, 30)), max_pixels=1000)


@pytest.mark.parametrize(
    ("pillow_limit", "message"),
    [(89_478_485, "has more than the 40000000 pixels allowed"), (None, "= 10000000000 pixels, more than")],
    ids=["pillow-guard", "our-guard"],
)
def test_a_decompression_bomb_is_refused_before_decoding(monkeypatch, pillow_limit, message):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    bomb = png_header_only(100_000, 100_000)  # 10 gigapixels claimed in ~100 bytes
    assert len(bomb) < 200
    with pytest.raises(PayloadTooLarge, match=message) as caught:
        decode(bomb)
    assert caught.value.status_code == 413


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"hello, world", "is not a PNG, JPEG, BMP or TIFF image"),
        (encode(random_image(), "GIF"), "is not a PNG, JPEG, BMP or TIFF image"),
        (encode(random_image(64, 64))[:300], "is corrupt or truncated"),
        (encode(random_image(64, 64), "JPEG")[:400], "is corrupt or truncated"),
        (png_header_only(50, 50), "is corrupt or truncated"),
    ],
    ids=["empty", "text", "gif", "truncated-png", "truncated-jpeg", "missing-data"],
)
def test_bad_files_are_invalid_input(data, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        decode_image(data, "RGB", LIMIT, filename="x.png", index=2)
    assert caught.value.status_code == 422
    assert "part 2 ('x.png')" in caught.value.detail


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damaged TIFF tags
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_damaged_files_never_raise_anything_else(fmt):
    original = encode(random_image(24, 24), fmt)
    rng = np.random.default_rng(0)
    for _ in range(40):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), size=rng.integers(1, 6)):
            damaged[position] = rng.integers(0, 256)
        cut = int(rng.integers(len(damaged) // 2, len(damaged) + 1))
        try:
            decoded = decode(bytes(damaged[:cut]))
        except (InvalidInput, PayloadTooLarge):
            continue
        assert decoded.dtype == np.uint8 and decoded.ndim == 3


def test_header_pixels_reads_the_size_without_decoding():
    assert header_pixels(encode(random_image(40, 30))) == 1200
    assert header_pixels(png_bomb(5000)) == 25_000_000  # a header whose data is missing still counts
    assert header_pixels(b"not an image") == 0
