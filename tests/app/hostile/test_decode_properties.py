"""Property-based tests of ``app.decode.decode_image``: whatever the bytes, it returns the array the
model expects or raises the service's own error (InvalidInput 422, PayloadTooLarge 413), never
anything else. Inputs: random bytes, small random images in every mode each accepted format can
hold, and those images mutated (bytes flipped, cut, inserted), which is where decoders break."""

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.decode import decode_image
from app.errors import InvalidInput, PayloadTooLarge

# The default run replays the same examples every time; a longer, random search on demand:
#   HYPOTHESIS_DECODE_EXAMPLES=20000 python -m pytest tests/app/hostile/test_decode_properties.py
EXPLORE = os.environ.get("HYPOTHESIS_DECODE_EXAMPLES")
PROPERTY = settings(
    max_examples=int(EXPLORE or 120),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not EXPLORE,
)
MAX_PIXELS = 4096
# Pillow warns about the corrupt files it still reads (skipped TIFF tags, bad EXIF): expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")

# (format, mode) pairs Pillow writes; the service must read every one of them.
WRITABLE = [
    *(("PNG", m) for m in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")),
    *(("JPEG", m) for m in ("L", "RGB", "CMYK")),
    *(("BMP", m) for m in ("1", "L", "P", "RGB")),
    *(("TIFF", m) for m in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "I;16", "F")),
]
SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*"]


def draw_image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I":
        return Image.fromarray(rng.integers(-(2**20), 2**20, (height, width), dtype=np.int32))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 2**16, (height, width), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.normal(100, 80, (height, width)).astype(np.float32))
    if mode == "1":
        return Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).convert("1")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert("P")
    bands = Image.getmodebands(mode)
    return Image.frombytes(
        mode, (width, height), rng.integers(0, 256, width * height * bands, np.uint8).tobytes()
    )


@st.composite
def encoded_images(draw) -> tuple[bytes, tuple[int, int]]:
    fmt, mode = draw(st.sampled_from(WRITABLE))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    image = draw_image(mode, width, height, draw(st.integers(0, 2**16)))
    params = (
        {"compression": draw(st.sampled_from(["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits"]))}
        if fmt == "TIFF"
        else {}
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue(), (width, height)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(encoded_images())[0])
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "zero-run"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at : at + draw(st.integers(1, 64))] = b"\0" * 8
    return bytes(data)


def decodes_or_refuses(data: bytes, color_mode: str) -> np.ndarray | None:
    """The property: an (H, W, C) uint8 array of the requested mode, or the service's error."""
    try:
        array = decode_image(data, color_mode, MAX_PIXELS)
    except (InvalidInput, PayloadTooLarge) as err:
        assert err.status_code in (413, 422) and err.detail.startswith("image 0 ")
        return None
    assert array.dtype == np.uint8 and array.ndim == 3 and array.flags.c_contiguous and array.flags.writeable
    assert array.shape[2] == (3 if color_mode == "RGB" else 1)
    assert array.shape[0] * array.shape[1] <= MAX_PIXELS
    return array


@PROPERTY
@given(
    prefix=st.sampled_from(SIGNATURES), tail=st.binary(max_size=512), color_mode=st.sampled_from(["RGB", "L"])
)
def test_random_bytes_are_decoded_or_refused(prefix, tail, color_mode):
    decodes_or_refuses(prefix + tail, color_mode)


@PROPERTY
@given(image=encoded_images(), color_mode=st.sampled_from(["RGB", "L"]))
def test_every_mode_of_every_format_decodes_upright_at_its_size(image, color_mode):
    data, (width, height) = image
    array = decodes_or_refuses(data, color_mode)
    assert array is not None, "a valid image of an accepted format was refused"
    assert array.shape[:2] == (height, width)


@PROPERTY
@given(data=mutated(), color_mode=st.sampled_from(["RGB", "L"]))
def test_mutated_images_are_decoded_or_refused(data, color_mode):
    decodes_or_refuses(data, color_mode)


@pytest.mark.parametrize("side", [65, 1000, 30_000, 2**31 - 1])
def test_pixel_limit_holds_from_the_header_at_every_scale(side):
    from tests.app.hostile.corpus import png_bomb

    with pytest.raises(PayloadTooLarge):
        decode_image(png_bomb(side), "RGB", MAX_PIXELS)
