"""Decoded Pillow images → uint8 arrays in the model's colour mode; shared by training and service.

One conversion for both sides keeps what the model saw in training and what it sees in service
identical: EXIF orientation applied, 16-bit scaled (not clipped) to 8 bits, alpha composited on
black, palette and CMYK expanded, then RGB or L.
"""

import numpy as np
from PIL import Image, ImageOps

COLOR_MODES = ("RGB", "L")


def to_array(image: Image.Image, color_mode: str) -> np.ndarray:
    """Pillow image of any common mode → (H, W, C) uint8, C = 3 for "RGB", 1 for "L"."""
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale: Pillow's convert("L") clips at 255, so scale the full range ourselves.
        # Always the top byte: one fixed mapping, so a dark 16-bit frame stays dark instead of being
        # read as 8-bit data (a per-image rule would make the same scene look different).
        data = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray((data >> 8).astype(np.uint8), "L")
    elif image.mode == "F":
        data = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        image = Image.fromarray(np.clip(data, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode not in ("RGB", "L"):
        try:
            image = image.convert(color_mode)
        except ValueError:  # some modes (CIELAB) convert to RGB only: "L" goes through RGB
            image = image.convert("RGB").convert(color_mode)
    array = np.array(image.convert(color_mode))  # owned and writable: torch.from_numpy needs that
    return array[:, :, None] if array.ndim == 2 else array
