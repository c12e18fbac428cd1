"""Images in, model input out: the one resize that training, evaluation and the service share.

Using one function everywhere avoids train/serve skew: the service uploads each decoded uint8
image to the device and resizes it there, exactly as the training data was resized.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_model_input(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """Stack images of any sizes into a model batch.

    Args:
        images: each (H, W, C) uint8, all with the model's number of channels, on one device.
        size: side of the square model input.
    Returns:
        (B, C, size, size) float32 in [0, 1], on the images' device.
    """
    if not images:
        raise ValueError("to_model_input needs at least one image")
    batch = []
    for image in images:
        if image.ndim != 3:
            raise ValueError(f"expected an (H, W, C) image, got shape {tuple(image.shape)}")
        x = image.permute(2, 0, 1)[None].float().div_(255.0)  # (1, C, H, W)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        batch.append(x)
    return torch.cat(batch).clamp_(0.0, 1.0)  # (B, C, S, S)


def to_image_size(amap: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A (S, S) anomaly map resized to an image's own (height, width), bilinearly."""
    if amap.shape == (height, width):
        return amap
    return F.interpolate(amap[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
