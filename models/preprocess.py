"""Images in, model input out: the one resize that training, evaluation and the service share.

Using one function everywhere avoids train/serve skew: the service uploads each decoded uint8
image to the device and resizes it there, exactly as the training data was resized.

Two ways to fit an image of any shape into the model's square (``RESIZE_MODES``):
- ``stretch`` resizes each side to the square's, so an elongated image is squashed along its long
  side, by a different factor for each aspect ratio;
- ``letterbox`` scales the image so that its long side fits, keeping its aspect ratio, centres
  it and fills the rest of the square with its own mirror image (reflection padding). The texture
  of a part keeps one scale in both directions whatever the image's shape, and the padding
  continues the image without an edge that the autoencoder would have to learn. The map of the
  padded band is cut off again when the map returns to the image's size.
For a square image the two are the same. A checkpoint records which one it was trained with;
``training fit`` chooses it from the training images' shapes unless told (``training.data.choose_resize``).

Region of interest (optional, ``roi``): a camera on a line sees the part and around it; the
model's few pixels are better spent on the part. A box given as fractions of the image's width and
height (left, top, right, bottom), so that it holds whatever the camera's resolution, is cut out
before the resize, and the map returns into that box of the whole frame, zero (nothing inspected)
outside. On tire, whose part fills about half of a 300 × 400 photo, the box gave a trained model
1.6 × 1.4 times the pixels on the part and lifted image AUROC (BENCHMARKS.md §2). ``training fit``
finds the box from the training images unless told (``training.part_box``); here it is a given.

Exposure normalisation (optional, ``exposure_mean``): each image's intensities are multiplied by
one gain so that its mean is the training images' mean, the way a camera's automatic gain would.
A shot of a normal part taken brighter or darker than usual then looks like the training images.
On magnetic_tile, whose tiles were shot at several exposures, the scores of good tiles followed
their brightness without it and did not with it (BENCHMARKS.md §2, where it also shows what it did
not help). One gain for all channels keeps the colours.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

RESIZE_MODES = ("stretch", "letterbox")

Box = tuple[float, float, float, float]  # (left, top, right, bottom), fractions of width and height


class Region(NamedTuple):
    """Where an image lies inside the model's square: rows top..top+height, columns left..left+width."""

    top: int
    left: int
    height: int
    width: int


def model_region(height: int, width: int, size: int, resize: str) -> Region:
    """The part of the (size, size) model input that an (height, width) image fills."""
    if resize == "stretch":
        return Region(0, 0, size, size)
    if resize != "letterbox":
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    return Region((size - h) // 2, (size - w) // 2, h, w)


def check_roi(roi: Sequence[float]) -> Box:
    """``roi`` as a Box, or ValueError saying what is wrong with it."""
    box = tuple(float(v) for v in roi)
    if len(box) != 4:
        raise ValueError(f"a region of interest is 4 numbers (left, top, right, bottom), got {len(box)}")
    left, top, right, bottom = box
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise ValueError(
            "a region of interest is (left, top, right, bottom) as fractions of the width and height, "
            f"with 0 <= left < right <= 1 and 0 <= top < bottom <= 1; got {box}"
        )
    return left, top, right, bottom


def roi_region(height: int, width: int, roi: Box) -> Region:
    """The pixels of an (height, width) image that ``roi`` covers: every pixel the box touches, at
    least one."""
    left, top, right, bottom = roi
    # The tolerance keeps a fraction written for a whole pixel (0.8 of 300) on that pixel edge
    # although 0.8 * 300 is 240.00000000000003 in floating point.
    x0 = min(math.floor(left * width + 1e-9), width - 1)
    y0 = min(math.floor(top * height + 1e-9), height - 1)
    x1 = max(x0 + 1, math.ceil(right * width - 1e-9))
    y1 = max(y0 + 1, math.ceil(bottom * height - 1e-9))
    return Region(y0, x0, min(y1, height) - y0, min(x1, width) - x0)


def crop_roi(image: torch.Tensor, roi: Box | None) -> torch.Tensor:
    """The ``roi_region`` of an (H, W, C) image, as a view (the crop copies nothing); the image
    itself when ``roi`` is None."""
    if roi is None:
        return image
    top, left, h, w = roi_region(image.shape[0], image.shape[1], roi)
    return image[top : top + h, left : left + w]


def to_model_input(
    images: Sequence[torch.Tensor],
    size: int,
    resize: str = "stretch",
    exposure_mean: float | None = None,
    roi: Box | None = None,
) -> torch.Tensor:
    """Stack images of any sizes into a model batch.

    Args:
        images: each (H, W, C) uint8, all with the model's number of channels, on one device.
        size: side of the square model input.
        resize: one of RESIZE_MODES.
        exposure_mean: when set, each image is scaled to this mean intensity (in [0, 1]) before the
            padding, so the mean is the image's own, not its mirror band's.
        roi: when set, only this box of each image (``roi_region``) becomes the model input.
    Returns:
        (B, C, size, size) float32 in [0, 1], on the images' device.
    """
    if not images:
        raise ValueError("to_model_input needs at least one image")
    batch = []
    for image in images:
        if image.ndim != 3:
            raise ValueError(f"expected an (H, W, C) image, got shape {tuple(image.shape)}")
        image = crop_roi(image, roi)
        x = image.permute(2, 0, 1)[None].float().div_(255.0)  # (1, C, H, W)
        region = model_region(x.shape[-2], x.shape[-1], size, resize)
        if x.shape[-2:] != (region.height, region.width):
            x = F.interpolate(
                x, size=(region.height, region.width), mode="bilinear", antialias=True, align_corners=False
            )
        if exposure_mean is not None:
            x = normalize_exposure(x, exposure_mean)
        if (region.height, region.width) != (size, size):
            x = _mirror_pad(x, region, size)
        batch.append(x)
    return torch.cat(batch).clamp_(0.0, 1.0)  # (B, C, S, S)


def normalize_exposure(x: torch.Tensor, exposure_mean: float) -> torch.Tensor:
    """Scale (1, C, H, W) intensities in [0, 1] by one gain so that their mean is ``exposure_mean``.

    The gain is bounded (1/16 to 16): a black frame stays black instead of becoming noise times a
    huge factor. Values pushed above 1 are clipped with the batch.
    """
    gain = (exposure_mean / x.mean().clamp_min(1e-6)).clamp(1 / 16, 16.0)
    return x * gain


def _mirror_pad(x: torch.Tensor, region: Region, size: int) -> torch.Tensor:
    """Pad (1, C, h, w) to (1, C, size, size) around ``region`` with its reflection.

    A reflection needs a pad shorter than the image; a wider band (an image more than three times
    as long as it is wide) reflects the padded image again, as a mirror tiling does.
    """
    pad_top, pad_left = region.top, region.left
    pad_bottom, pad_right = size - region.height - pad_top, size - region.width - pad_left
    while pad_top or pad_bottom or pad_left or pad_right:
        h, w = x.shape[-2:]
        step = [
            min(p, limit - 1) for p, limit in ((pad_left, w), (pad_right, w), (pad_top, h), (pad_bottom, h))
        ]
        if not any(step):  # a one-pixel side has nothing to reflect
            return F.pad(x, (pad_left, pad_right, pad_top, pad_bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        pad_left, pad_right, pad_top, pad_bottom = (
            pad_left - step[0],
            pad_right - step[1],
            pad_top - step[2],
            pad_bottom - step[3],
        )
    return x


def to_image_size(
    amap: torch.Tensor, height: int, width: int, resize: str = "stretch", roi: Box | None = None
) -> torch.Tensor:
    """A (S, S) anomaly map back on an image's own (height, width) pixels: the image's region of
    the model input (``model_region``), resized bilinearly; with a region of interest, into that
    box of a map that is zero elsewhere."""
    if roi is not None:
        top, left, h, w = roi_region(height, width, roi)
        frame = amap.new_zeros((height, width))
        frame[top : top + h, left : left + w] = to_image_size(amap, h, w, resize)
        return frame
    if amap.shape == (height, width):
        return amap
    top, left, h, w = model_region(height, width, amap.shape[-1], resize)
    if (h, w) != amap.shape:
        amap = amap[top : top + h, left : left + w]
    return F.interpolate(amap[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
