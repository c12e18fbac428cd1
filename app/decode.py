"""Uploaded bytes → the (H, W, C) uint8 array a checkpoint expects, safely.

Only PNG, JPEG, BMP and TIFF are opened. ``Image.open`` reads the header alone, so the pixel count
is checked against the limit before a single pixel is decoded (decompression bombs: a few kilobytes
of PNG can claim gigapixels). The decoded image then goes through ``models.imageio.to_array``, the
conversion training used, so the model sees in service exactly what it saw in training: EXIF
orientation applied (the image, its mask and its overlay are upright), 16-bit greyscale scaled by
its top byte (``v >> 8``) rather than clipped, alpha composited on black, then the checkpoint's
colour mode, "RGB" or "L" (ITU-R 601 luma).

Runs in the codec thread pool; Pillow releases the GIL while it decodes.
"""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.errors import InspectError, InvalidInput, PayloadTooLarge
from models.imageio import to_array

FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
MEDIA_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/tiff": "TIFF",
}


def describe(filename: str | None, index: int) -> str:
    return f"part {index} ({filename!r})" if filename else f"image {index}"


def header_pixels(data: bytes) -> int:
    """Width × height as the image's header declares it, nothing decoded. 0 when the header cannot
    be read or claims more than twice the pixel limit: ``decode_image`` then refuses the image."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            return width * height
    except Exception:  # DecompressionBombError included: decode_image answers 413 for it
        return 0


def decode_image(
    data: bytes, color_mode: str, max_pixels: int, *, filename: str | None = None, index: int = 0
) -> np.ndarray:
    """Decode one upload.

    Args:
        data: the file's bytes.
        color_mode: the checkpoint's, "RGB" or "L".
        max_pixels: largest accepted width × height.
        filename, index: name the image in error messages.
    Returns:
        (H, W, 3) or (H, W, 1) uint8, C-contiguous and writable, of the upright image.
    Raises:
        PayloadTooLarge: more pixels than ``max_pixels`` (413).
        InvalidInput: not a PNG, JPEG, BMP or TIFF image, or a corrupt or truncated one (422).
    """
    name = describe(filename, index)
    if not data:
        raise InvalidInput(f"{name} is empty", filename=filename)
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"{name} has {width}×{height} = {width * height} pixels, more than the {max_pixels} allowed",
                    filename=filename,
                )
            image.load()
            mode = image.mode
            try:
                return to_array(image, color_mode)
            except Exception as err:  # a readable image in a mode Pillow cannot convert
                raise InvalidInput(
                    f"{name} has pixel mode {mode}, which cannot be converted to {color_mode} ({err})",
                    filename=filename,
                ) from None
    except Image.DecompressionBombError:  # Pillow's own guard, at twice our limit, fired while opening
        raise PayloadTooLarge(
            f"{name} has more than the {max_pixels} pixels allowed", filename=filename
        ) from None
    except UnidentifiedImageError:
        raise InvalidInput(f"{name} is not a PNG, JPEG, BMP or TIFF image", filename=filename) from None
    except InspectError:
        raise
    except Exception as err:
        # Pillow reports corrupt and truncated files with OSError, SyntaxError, ValueError, struct.error
        # and more, depending on the plugin: whatever a file makes it raise, the file is at fault.
        raise InvalidInput(f"{name} is corrupt or truncated ({err})", filename=filename) from None
